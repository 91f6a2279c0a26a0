# sandbox-kernel: the start of a bash that takes a session over from one that set -e was ending
# (handover.bash). The kernel's script is on fd 7 (bash opens it after this file; the
# first command, __sk_lost, closes it), the old bash's state on the fd in __SK_RESUME_FD; the rest
# of the fds as at a first start. bash's own read-only variables refuse to be set again: quietly.
. "${BASH_SOURCE[0]%/*}/session.bash"
{ . "/dev/fd/$__SK_RESUME_FD"; } 2>/dev/null
exec {__SK_RESUME_FD}<&-
unset -v __SK_RESUME_FD
set -E
