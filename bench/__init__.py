"""The kernel bench: sandbox-kernel against its peers (bash_kernel, ipykernel's `!` and `%%bash`,
and a do-nothing kernel as the protocol floor), measured side by side in one run. `make bench`."""
