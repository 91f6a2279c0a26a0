if [[ -z $__sk_interrupted ]] && __sk_parse_ok; then __sk_set_status "$__sk_last_status"; eval "$__sk_code"; fi
# Sourced at top level for each cell (see session.bash): `return` ends the cell, `$?` starts as
# the last cell's, and the eval stays on line 1 so that bash's line numbers are the cell's.
