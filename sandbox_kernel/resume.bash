# sandbox-kernel: the start of a bash that takes a session over from one that set -e was ending
# (handover.bash). session.bash finds the fds' numbers in __SK_RESUME; the kernel's script is on
# __sk_script_copy (bash opens it after this file; the first command, __sk_lost, closes it), the
# old bash's state on __sk_state_fd. bash's own read-only variables refuse to be set again: quietly.
. "${BASH_SOURCE[0]%/*}/session.bash"
__sk_state=$(< "/dev/fd/$__sk_state_fd")
exec {__sk_state_fd}<&-
{ builtin eval -- "$__sk_state"; } 2>/dev/null
builtin unset -v __sk_state __sk_state_fd
builtin set -E
