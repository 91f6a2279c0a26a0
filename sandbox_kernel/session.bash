# sandbox-kernel: the bash side of one session.
#
# The kernel starts `bash /dev/fd/3` and writes one fixed line per request to fd 3; bash runs each
# line at top level, so a cell behaves as at a prompt (`declare` is global, `break` outside a loop is
# only an error). Cell code never travels on fd 3: it comes on the data fd and runs through `eval`,
# so nothing a cell contains can wedge the reader. Output goes to fds 1 and 2 untouched; the end of
# a cell is a DONE message on the control fd, never something parsed out of the output.
#
# Fds on entry: 0 stdin that is always at EOF, 1 stdout, 2 stderr, 3 this script (bash reads it
# through fd 255), 4 data from the kernel, 5 messages to the kernel (NUL-terminated fields).

unset BASH_ENV ENV
BASH_ARGV0=bash
shopt -s expand_aliases  # as at a prompt
# Keep 3-9 free for the user: the protocol fds move above 10.
exec {__sk_data}<&4 {__sk_ctl}>&5 {__sk_stdin}<&0 3<&- 4<&- 5>&-
__sk_cell=${BASH_SOURCE[0]%/*}/cell.bash
__sk_last_status=0
__sk_in_cell=
__sk_interrupted=
__sk_syntax=
__sk_allow_stdin=

__sk_send() { # fields... : one message to the kernel
    printf '%s\0' "$@" >&"$__sk_ctl"
}

__sk_set_status() { return "$1"; }

__sk_field() { # var : one NUL-terminated field from the kernel; 1 if a signal came first
    IFS= builtin read -r -d '' -u "$__sk_data" "$1" && return 0
    (( $? > 128 )) && return 1
    exit 0 # end of file: the kernel has gone
}

__sk_take() { # nonce var... : skip to the field that is the nonce, then read one field per var
    local __sk_f
    while :; do
        __sk_field __sk_f || continue
        [[ $__sk_f == "$1" ]] || continue
        shift
        for __sk_f; do
            until __sk_field "$__sk_f"; do :; done
        done
        return 0
    done
}

__sk_recv() { # nonce
    __sk_take "$1" __sk_allow_stdin __sk_code
    trap __sk_on_int INT
    __sk_in_cell=1
}

# Interrupt: SIGINT reaches bash and its foreground children. The trap cannot jump out of the
# cell by itself, so it arms a DEBUG trap that simulates `return` (extdebug) before each next
# command until the sourced cell file has returned; loops and functions unwind with it.
__sk_unwind() {
    [[ $__sk_in_cell ]] && (( ${#FUNCNAME[@]} > 2 )) && return 2
    return 0
}
__sk_on_int() {
    __sk_interrupted=1
    [[ $__sk_in_cell && -z $__sk_unwinding ]] || return 0
    __sk_unwinding=1
    if shopt -q extdebug; then __sk_had_extdebug=1; else __sk_had_extdebug=; fi
    __sk_saved_debug=$(trap -p DEBUG)
    shopt -s extdebug
    trap __sk_unwind DEBUG
}
trap __sk_on_int INT

__sk_strip_newlines() { # var
    local -n __sk_v=$1
    while [[ $__sk_v == *$'\n' ]]; do __sk_v=${__sk_v%$'\n'}; done
}

# Prints bash's complaint about CODE (nothing if it parses) without running any of it: under
# `set -n` a non-interactive bash parses each command and executes none, and the subshell keeps
# that from sticking. Line numbers are made the cell's own.
__sk_syntax_errors() { # code
    local err base=$(( LINENO + 1 )); err=$(LC_ALL=C; eval $'set -n\n'"$1" 2>&1)
    if [[ $? != 0 ]]; then
        local line out=
        while IFS= builtin read -r line; do
            [[ $line =~ ^.*:\ eval:\ line\ ([0-9]+):\ (.*)$ ]] &&
                line="bash: line $(( BASH_REMATCH[1] - base )): ${BASH_REMATCH[2]}"
            out+=$line$'\n'
        done <<< "$err"
        printf '%s' "$out"
    elif [[ $err =~ here-document\ at\ line\ ([0-9]+)\ delimited\ by\ end-of-file\ \(wanted\ (.*)\) ]]; then
        printf 'bash: line %d: syntax error: here-document not terminated (wanted %s)\n' \
            "$(( BASH_REMATCH[1] - base ))" "${BASH_REMATCH[2]}"
    elif [[ $1 == *\\ ]]; then
        # eval takes a final backslash literally; at a prompt it would wait for more. `(:)` on a
        # next line is valid after a complete command and an error after a continuation.
        err=$(LC_ALL=C; eval $'set -n\n'"$1"$'\n(:)' 2>&1) ||
            printf 'bash: syntax error: the cell ends with a line continuation (\\)\n'
    fi
}

# Whole-cell parse check before running anything, so that a cell with an error in line 9 does not
# run lines 1-8. A one-line cell is parsed whole by eval anyway and needs no check (no fork).
__sk_parse_ok() {
    local code=$__sk_code err
    __sk_strip_newlines code
    case $code in
        *$'\n'* | *'<<'* | *\\) ;;
        *) return 0 ;;
    esac
    err=$(__sk_syntax_errors "$code")
    [[ -z $err ]] && return 0
    printf '%s' "$err" >&2
    __sk_syntax=1
    return 1
}

__sk_done() { # nonce; __sk_st holds the cell's status
    local flags=
    if [[ $__sk_unwinding ]]; then
        trap - DEBUG
        [[ $__sk_saved_debug ]] && eval "$__sk_saved_debug"
        [[ $__sk_had_extdebug ]] || shopt -u extdebug
        __sk_unwinding=
    fi
    if [[ $__sk_interrupted ]]; then
        flags+=i
        __sk_st=130
    elif [[ $__sk_st == 2 && -z $__sk_syntax ]]; then
        # A one-line cell skipped the check: tell a syntax error from a command's own status 2.
        local code=$__sk_code
        __sk_strip_newlines code
        [[ $(__sk_syntax_errors "$code") ]] && __sk_syntax=1
    fi
    [[ $__sk_syntax ]] && { flags+=s; __sk_st=2; }
    __sk_last_status=$__sk_st
    __sk_interrupted= __sk_syntax= __sk_code=
    __sk_send DONE "$1" "$__sk_st" "$flags" "$PWD"
}

# The cell's stdin is at EOF for every program; `read` from it asks the frontend instead, when the
# frontend allows input (an input_request, password=True for -s), and sees EOF otherwise.
read() {
    local __sk_o __sk_p= __sk_s=0 __sk_u=0 OPTIND=1 OPTERR=0
    while getopts ':a:d:ei:n:N:p:rst:u:' __sk_o; do
        case $__sk_o in
            p) __sk_p=$OPTARG ;;
            s) __sk_s=1 ;;
            u) __sk_u=$OPTARG ;;
        esac
    done
    if [[ $__sk_u != 0 || ! /proc/self/fd/0 -ef /proc/self/fd/$__sk_stdin || -z $__sk_allow_stdin ]]; then
        builtin read "$@"
        return
    fi
    local __sk_reply
    __sk_send INPUT "$__sk_p" "$__sk_s"
    until __sk_field __sk_reply; do :; done
    # I: the user interrupted (a trapped SIGINT does not end a builtin read); E: end of file.
    [[ $__sk_reply == I ]] && { __sk_on_int; return 130; }
    [[ $__sk_reply == V* ]] || return 1
    builtin read "$@" <<< "${__sk_reply#V}"
}

# display [--mime TYPE | --png | --jpeg | --gif | --svg | --html | --markdown | --json | --text] [FILE]
# Shows FILE (or stdin) in the notebook. The bytes are read here, inside the session, and sent
# over the session's private channel; the kernel never opens a path.
display() {
    local mime= data
    while (( $# )); do
        case $1 in
            --mime) [[ $# -ge 2 ]] || { echo "display: --mime needs a type, e.g. --mime image/png" >&2; return 2; }
                    mime=$2; shift 2; continue ;;
            --mime=*) mime=${1#--mime=} ;;
            --png) mime=image/png ;;
            --jpeg|--jpg) mime=image/jpeg ;;
            --gif) mime=image/gif ;;
            --svg) mime=image/svg+xml ;;
            --html) mime=text/html ;;
            --markdown|--md) mime=text/markdown ;;
            --json) mime=application/json ;;
            --latex) mime=text/latex ;;
            --text) mime=text/plain ;;
            -h|--help) echo "usage: display [--mime TYPE | --png | --jpeg | --gif | --svg | --html | --markdown | --json | --latex | --text] [FILE]  (no FILE: read stdin)"; return 0 ;;
            --) shift; break ;;
            -?*) echo "display: unknown option '$1' (see display --help)" >&2; return 2 ;;
            *) break ;;
        esac
        shift
    done
    if (( $# > 1 )); then echo "display: give one file at a time" >&2; return 2; fi
    if [[ -z $mime ]]; then
        case ${1,,} in
            '') echo "display: reading stdin needs a type, e.g. --mime image/svg+xml" >&2; return 2 ;;
            *.png) mime=image/png ;;
            *.jpg|*.jpeg) mime=image/jpeg ;;
            *.gif) mime=image/gif ;;
            *.svg) mime=image/svg+xml ;;
            *.html|*.htm) mime=text/html ;;
            *.md|*.markdown) mime=text/markdown ;;
            *.json) mime=application/json ;;
            *.pdf) mime=application/pdf ;;
            *.txt) mime=text/plain ;;
            *) echo "display: cannot tell the type of '$1'; say it with --mime TYPE" >&2; return 2 ;;
        esac
    fi
    if [[ ! $mime =~ ^[A-Za-z0-9][A-Za-z0-9.+-]*/[A-Za-z0-9][A-Za-z0-9.+-]*$ ]]; then
        echo "display: '$mime' is not a MIME type" >&2
        return 2
    fi
    if (( $# )); then
        data=$(base64 -w0 -- "$1") || return 1
    else
        data=$(base64 -w0) || return 1
    fi
    __sk_send DISPLAY "$mime" "$data"
}

# Requests that are not cells (completion, inspection, is_complete) answer on the control fd and
# leave $? and the cell state as they were.
__sk_query() { # nonce
    local kind arg
    local -a items=()
    __sk_take "$1" kind arg
    case $kind in
        commands) mapfile -t items < <(compgen -c -- "$arg") ;;
        variables) mapfile -t items < <(compgen -v -- "$arg") ;;
        files)
            local f
            while IFS= builtin read -r f; do
                [[ -d $f ]] && f+=/
                items+=("$f")
            done < <(compgen -f -- "$arg")
            ;;
        inspect)
            items=("$(type -a -- "$arg" 2>&1)")
            [[ $(type -t -- "$arg") == builtin || $(type -t -- "$arg") == keyword ]] &&
                items+=("$(help -- "$arg" 2>&1)")
            ;;
        parse) items=("$(__sk_syntax_errors "$arg")") ;;
        jobs) mapfile -t items < <(jobs -rp) ;;
    esac
    __sk_send REPLY "$1" "${#items[@]}" "${items[@]}"
}

__sk_send CWD "$PWD"
