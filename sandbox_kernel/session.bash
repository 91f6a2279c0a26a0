# sandbox-kernel: the bash side of one session.
#
# The kernel starts an interactive bash (`-i`, so that an expansion error or a failed `exec` aborts
# a command instead of ending the shell, as at a prompt) reading /dev/fd/3, and writes fixed lines
# to fd 3 (CELL_LINES in shell.py): `\__sk_recv N; \. CELL; ...; \__sk_done N`, then `\__sk_lost N`,
# which reports the cell if bash abandoned the first line (an error that jumps back to the top
# level). Cell code never travels on fd 3: it comes on the data fd and runs through `eval`, so
# nothing a cell contains can wedge the reader. Output goes to fds 1 and 2 untouched; the end of a
# cell is a DONE message on the control fd, never something parsed out of the output.
#
# Everything here must work whatever the user set: protocol functions are parsed now, before any
# user alias; they call builtins through `builtin` (`\builtin` where bash parses at run time:
# command substitutions, the kernel's lines), reset options with `local -`, and trace (set -x)
# into fd 59, which is /dev/null except while the user's code runs (BASH_XTRACEFD=59); what the
# user's code calls (read, display, the traps) puts /dev/null on fd 59 itself. The user's
# -e and -v are off while the kernel's code runs and come back at the cell's first command.
#
# Fds on entry: 0 stdin that is always at EOF, 1 stdout, 2 /dev/null while bash started (it prints
# job-control notices), 6 the real stderr, 3 this script (bash reads it through a copy above 9), 4 data from
# the kernel, 5 messages to the kernel (NUL-terminated fields).

__sk_find_script() { # FD : where bash reads this script from, its own copy of FD (see handover.bash)
    local - __sk_f
    builtin set +f
    for __sk_f in /dev/fd/*; do
        [[ ${__sk_f##*/} -gt 9 && ${__sk_f##*/} != "$1" && $__sk_f -ef /dev/fd/$1 ]] && { __sk_script=${__sk_f##*/}; return 0; }
    done
}
if [[ ${__SK_RESUME-} ]]; then
    # A bash taking over from one that set -e was ending (handover.bash, resume.bash): the fds are
    # where the old bash had them, the user's 3-9 too.
    builtin read -r __sk_data __sk_ctl __sk_stdin __sk_parked __sk_script_copy __sk_state_fd __sk_resumed <<< "$__SK_RESUME"
    exec 2>&"$__sk_parked" {__sk_parked}>&- 59>/dev/null
    unset -v __SK_RESUME __sk_parked
else
    exec 2>&6 6>&-
    __sk_find_script 3
    # Keep 3-9 free for the user: the protocol fds move above 10.
    exec {__sk_data}<&4 {__sk_ctl}>&5 {__sk_stdin}<&0 3<&- 4<&- 5>&- 59>/dev/null
fi
# The session's stdout and stderr, whatever a command that bash ends in has redirected.
exec {__sk_stdout}>&1 {__sk_stderr}>&2
unset BASH_ENV ENV HISTFILE
BASH_ARGV0=bash
# No history, no job control (background jobs then ignore SIGINT); errtrace, so that the ERR trap
# reaches functions and `set -e` can end the cell there.
set +H +m +o history -E
shopt -s expand_aliases execfail
BASH_XTRACEFD=59
__sk_xtarget=2  # where the user's traces go: stderr, or the user's own BASH_XTRACEFD
__sk_dir=${BASH_SOURCE[0]%/*}
exec {__sk_cellfd}<"$__sk_dir/cell.bash"
# cell.bash, sourced at top level for each cell: `return` ends the cell, and its one line keeps bash's
# line numbers the cell's and is parsed whole before the cell runs (so `set -v` in the cell does not
# show it). After a cell that may have called `builtin trap`, the DEBUG and RETURN traps are taken
# aside there. Through /dev/fd, so that no path of the package shows in BASH_SOURCE.
__sk_cell=/dev/fd/$__sk_cellfd
__sk_last_status=0
__sk_in_cell=
__sk_cell_over=  # the cell's own commands are over (the rest of the cell file is the kernel's)
__sk_interrupted=
__sk_syntax=
__sk_allow_stdin=
__sk_sent=
__sk_errexit=   # the user's `set -e`, off while the kernel's own code runs
__sk_verbose=   # the user's `set -v`, likewise
__sk_unwinding=
__sk_pending=  # the cell ends after the ERR trap: its status, or `abort` (interrupted)
__sk_abort_status=
__sk_starting=
__sk_exec_watch= __sk_exec_errexit=  # the cell may exec a program: -e is off for each exec it runs
__sk_user_debug= __sk_user_err= __sk_user_return= __sk_user_exit=  # the user's traps, run by the kernel's
__sk_exiting=  # `exit` was called: the EXIT trap lets the shell end
__sk_argv=()  # the positional parameters at the start of the cell
__sk_q=0 __sk_u=  # $? and $_ before the DEBUG gate, which gives them back
__sk_resumed=${__sk_resumed-}  # this bash took over from one that set -e was ending: the cell's status
__sk_resume_extdebug= __sk_resume_functrace=  # its extdebug and functrace, for after the start-up
__sk_debug_set= __sk_return_set=  # the kernel's DEBUG, RETURN trap is set
__sk_untrap=()  # the kernel's traps to remove at the top level after a cell

__sk_send() { # fields... : one message to the kernel; the leading NUL ends whatever a cell left unfinished
    builtin printf '%s\0' '' "$@" >&"$__sk_ctl"
}

__sk_set_status() { return "$1"; }  # status [what $_ is to be]
__sk_keep() { __sk_q=$1 __sk_u=$2; }  # status $_ : what a trap found, for it to give back

__sk_field() { # var : one NUL-terminated field from the kernel; 1 if a signal came first
    IFS= builtin read -r -d '' -u "$__sk_data" "$1" && return 0
    (( $? > 128 )) && return 1
    __sk_exiting=1
    builtin exit 0 # end of file: the kernel has gone
}

__sk_take() { # nonce var... : skip to the field that is the nonce, then read one field per var
    local - __sk_f
    builtin set +euf
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

# -- traps -----------------------------------------------------------------------------------------
# The user's DEBUG, ERR and RETURN commands are kept aside (__sk_user_*) and run by the kernel's own
# traps (the gates), for the user's commands only: between cells only the kernel's ERR trap is set,
# and in a cell the kernel's DEBUG and RETURN traps when needed. `trap` is a function that keeps
# them there, wherever the user's code calls it (a cell, a sourced file, a function), and shows them
# as the user set them. A gate runs the user's command itself, in the trap's own context, so that
# $?, $LINENO, FUNCNAME, caller and $BASH_COMMAND are what they would be at a prompt.

__sk_ours() { # true if the calling trap fired for the kernel's own code (FUNCNAME[2]: where it fired)
    case ${FUNCNAME[2]-main} in
        main | __sk_* | read | display | trap | exit) return 0 ;;
    esac
    return 1
}

# DEBUG: unwinds the cell after an interrupt or a `set -e` failure (with extdebug, status 2 from a
# DEBUG trap returns from the function or sourced file), gives back -e and -v once the cell has been
# parsed, and has the gate run the user's DEBUG trap (status 3) or remove itself (4).
__sk_debug() {
    local __sk_st=$__sk_q
    case $__sk_gating in
        1) return 0 ;;  # a command of the kernel's ERR, RETURN or INT gate
        2) # the gate's eval of the user's command (not the end of __sk_user_status, under functrace)
            [[ ${FUNCNAME[1]} == __sk_user_status ]] || __sk_gating=0
            return 0 ;;
    esac
    __sk_ours && return 0
    # The first command after the cell's eval, in the cell file: the rest is the kernel's.
    [[ $BASH_COMMAND == '__sk_cell_status=$?' ]] && __sk_cell_over=1
    [[ $__sk_cell_over ]] && return 0
    if [[ $__sk_unwinding ]]; then
        (( ${#FUNCNAME[@]} > 2 )) && return 2
        return 0
    fi
    [[ $__sk_exec_errexit ]] && { __sk_exec_errexit=; builtin set -e; }  # after an exec (see below)
    if [[ $__sk_starting ]]; then
        # Until the user's first command: the kernel's eval, and the ERR trap's commands for the
        # status __sk_start gives back (the trap's own commands see the trapped command).
        case $BASH_COMMAND in *'builtin eval "$__sk_wrapped"'* | 'return "$__sk_last_status"') return 0 ;; esac
        __sk_starting=
        [[ $__sk_verbose ]] && builtin set -v
        [[ $__sk_errexit ]] && builtin set -e
        # Set for this alone, the gate goes (from the trap itself: a function cannot remove it).
        [[ $__sk_user_debug || $__sk_exec_watch ]] || return 4
    fi
    # bash 5.2 ends itself, running no trap, when an exec fails under -e: -e is off while an exec
    # runs (it replaces the shell, or fails and the ERR gate ends the cell), back at the next
    # command here (a subshell right after a failed `exec ... ||` runs without it).
    if [[ $__sk_exec_watch && $- == *e* && $BASH_COMMAND =~ $__sk_an_exec ]]; then
        builtin set +e
        __sk_errexit=1 __sk_exec_errexit=1
    fi
    [[ $__sk_user_debug ]] || return 0
    __sk_tst=$__sk_st
    return 3  # the gate runs the user's command
}

# ERR: under `set -e` a failure ends the cell, not the shell (the trap runs before bash would exit,
# and turns errexit off for the rest of the cell); the gate runs the user's ERR trap (status 0), and
# then ends the cell (__sk_abort_pending: the unwinding DEBUG trap would skip the user's commands).
# errtrace is on, so this runs in functions and subshells too; a subshell keeps bash's own `set -e`.
__sk_err() {
    local __sk_st=$?
    __sk_ours && return 1
    case $BASH_COMMAND in  # the kernel's own commands in the cell file: the cell's status, the last one's
        *'builtin eval "$__sk_wrapped"'*)
            # An error that aborts the cell's eval (an arithmetic error): under set -e bash would now
            # exit, and the cell ends instead, -e kept.
            [[ $- == *e* && $__sk_in_cell && $BASHPID == "$$" ]] && { builtin set +e; __sk_errexit=1 __sk_pending=$__sk_st; }
            return 1 ;;
        'return "$__sk_last_status"') return 1 ;;
    esac
    [[ $__sk_unwinding ]] && return 1  # commands skipped while the cell unwinds
    if [[ $__sk_in_cell && $BASHPID == "$$" ]]; then
        if builtin read -t 0 -u "$__sk_data"; then
            # The kernel's interrupt mark: the command ignored SIGINT and was ended, and an
            # interactive bash runs no INT trap for a command that did not die of SIGINT.
            __sk_interrupted=1 __sk_pending=abort
        elif [[ $- == *e* || $__sk_exec_errexit || $__sk_starting && $__sk_errexit ]]; then
            # (-e comes back at the first DEBUG firing, which a failing subshell before it gives none)
            builtin set +e
            __sk_errexit=1 __sk_pending=$__sk_st
        elif [[ $BASH_COMMAND =~ $__sk_fatal ]]; then
            __sk_pending=$__sk_st  # what would end a script (a failed exec, a bad `set`) ends the cell
        fi
    fi
    [[ $__sk_user_err ]] || return 1
    __sk_tst=$__sk_st
}
__sk_fatal='^(exec|set|export|readonly|unset|shift)([[:space:]]|$)'

# RETURN: the user's RETURN trap (status 0), but not for the return from the kernel's cell file.
__sk_return() {
    local __sk_st=$?
    __sk_ours && return 1
    [[ ${FUNCNAME[1]} == source && ${BASH_SOURCE[1]} == "$__sk_cell" ]] && return 1
    __sk_tst=$__sk_st
}

# The gates. `if` gives the user's command its $? without that counting as a failure (set -e).
# Inside the ERR, RETURN and INT traps, a user's DEBUG trap would fire for the gate's own commands
# too: their redirection (expanded before any of them runs) sets __sk_gating to 1, which the DEBUG
# gate passes over, and __sk_user_status to 2, which passes over the eval and then clears.
__sk_gating=0 __sk_none=
__sk_hush='59>/dev/null${__sk_none:0:(__sk_gating = __sk_gating ? __sk_gating : 1) * 0}'
__sk_user_trap='if \__sk_@status "$__sk_tst"; then \builtin eval -- "$__sk_user_@" 59>&"$__sk_xtarget"; else \builtin eval -- "$__sk_user_@" 59>&"$__sk_xtarget"; fi'
__sk_user_trap=${__sk_user_trap//@status/user_status}
# The DEBUG gate fires before the user's commands: it gives them back $? and $_ as they were (the
# last argument of a function's call becomes $_), also after the user's DEBUG trap (where bash
# would leave that trap's last argument).
__sk_gate_debug='{ \__sk_keep "$?" "$_"; \__sk_debug || case $? in 3) '${__sk_user_trap//user_status/set_status}' ;; 4) \builtin trap - DEBUG ;; *) \__sk_set_status 2 ;; esac; \__sk_set_status "$?" "$__sk_u"; } 59>/dev/null'
__sk_gate_debug=${__sk_gate_debug//@/debug}
__sk_gate_debug=${__sk_gate_debug//'"$__sk_tst"; then'/'"$__sk_tst" "$__sk_u"; then'}
__sk_gate_err='{ \__sk_err && { '${__sk_user_trap//@/err}'; }; { [[ -z $__sk_pending ]] || \__sk_abort_pending; __sk_gating=0; } '$__sk_hush'; } '$__sk_hush
__sk_gate_return='{ \__sk_return && { '${__sk_user_trap//@/return}'; }; { __sk_gating=0; } '$__sk_hush'; } '$__sk_hush
__sk_gate_int='{ \__sk_on_int; __sk_gating=0; } '$__sk_hush
__sk_gate_exit='{ \__sk_on_exit "$@"; if \__sk_set_status "$__sk_tst"; then \builtin eval -- "$__sk_user_exit" 59>&"$__sk_xtarget"; else \builtin eval -- "$__sk_user_exit" 59>&"$__sk_xtarget"; fi; } 59>/dev/null'
unset -v __sk_user_trap __sk_hush

__sk_user_status() { # the gate's eval of the user's command is next (see above); $? for it
    __sk_gating=2
    return "$__sk_tst"
}

__sk_user_ignored=  # " DEBUG" and so on: set to '' by the user, which trap -p shows
unset -v __sk_user_trap

trap() { # [-lp] [[COMMAND] SIGNAL...] : the builtin, with DEBUG, ERR and RETURN kept for the gates
    local - __sk_c __sk_s
    local -a __sk_other=()
    builtin set +euf
    case ${1-} in
        -p) shift; [[ ${1-} == -- ]] && shift; __sk_show_traps "$@"; return ;;
        --) shift ;;
        -?*) builtin trap "$@"; return ;;  # -l, or what bash itself words as an error
    esac
    (( $# )) || { __sk_show_traps; return; }
    if (( $# == 1 )) || [[ $1 =~ ^[0-9]+$ ]]; then __sk_c=-; else __sk_c=$1; shift; fi
    for __sk_s; do
        case ${__sk_s^^} in
            DEBUG | ERR | RETURN) __sk_keep_trap "${__sk_s^^}" "$__sk_c" ;;
            EXIT | SIGEXIT | 0)  # (a subshell has no kernel EXIT trap: its own is bash's)
                if [[ $BASHPID == "$$" ]]; then __sk_keep_trap EXIT "$__sk_c"; else __sk_other+=("$__sk_s"); fi ;;
            *) __sk_other+=("$__sk_s") ;;
        esac
    done
    (( ${#__sk_other[@]} )) || return 0
    builtin trap -- "$__sk_c" "${__sk_other[@]}"
} 59>/dev/null

__sk_keep_trap() { # SIGNAL COMMAND ('-': reset)
    local -n __sk_var=__sk_user_${1,,}
    __sk_user_ignored=${__sk_user_ignored// $1/}
    if [[ $2 == - ]]; then __sk_var=; return 0; fi
    __sk_var=$2
    [[ $2 ]] || { __sk_user_ignored+=" $1"; return 0; }
    # The rest of the cell runs under the user's trap; __sk_done takes the gates away after it.
    case $1 in
        DEBUG) builtin trap -- "$__sk_gate_debug" DEBUG; __sk_debug_set=1 ;;
        RETURN) builtin trap -- "$__sk_gate_return" RETURN; __sk_return_set=1 ;;
    esac
    return 0
}

__sk_show_traps() { # [SIGNAL...] : `trap -p` as the user set the traps, the kernel's own left out
    local __sk_s __sk_t __sk_line
    if (( $# == 0 )); then
        [[ $BASHPID == "$$" ]] && __sk_show_traps EXIT  # bash lists EXIT first
        __sk_t=$(\builtin trap -p)
        [[ $__sk_t ]] && while IFS= builtin read -r __sk_line; do
            case $__sk_line in
                "trap -- '$__sk_gate_int' SIGINT" | "trap -- '$__sk_gate_debug' DEBUG" | "trap -- '$__sk_gate_exit' EXIT" | \
                "trap -- '$__sk_gate_err' ERR" | "trap -- '$__sk_gate_return' RETURN") ;;
                *) builtin printf '%s\n' "$__sk_line" ;;
            esac
        done <<< "$__sk_t"
        set -- DEBUG ERR RETURN
    fi
    for __sk_s; do
        case ${__sk_s^^} in
            EXIT | SIGEXIT | 0)
                if [[ $BASHPID != "$$" ]]; then  # a subshell's own, unless it is still the kernel's
                    __sk_t=$(\builtin trap -p EXIT)
                    if [[ $__sk_t && $__sk_t != "trap -- '$__sk_gate_exit' EXIT" ]]; then
                        builtin printf '%s\n' "$__sk_t"
                        continue
                    fi
                fi
                __sk_s=EXIT ;&
            DEBUG | ERR | RETURN)
                local -n __sk_var=__sk_user_${__sk_s,,}
                [[ $__sk_var || $__sk_user_ignored == *" ${__sk_s^^}"* ]] &&
                    builtin printf "trap -- '%s' %s\n" "${__sk_var//\'/\'\\\'\'}" "${__sk_s^^}"
                unset -n __sk_var ;;
            INT | SIGINT | 2)
                __sk_t=$(\builtin trap -p INT)
                [[ $__sk_t == "trap -- '$__sk_gate_int' SIGINT" ]] || builtin printf '%s\n' "$__sk_t" ;;
            *) builtin trap -p "$__sk_s" || return ;;
        esac
    done
    return 0
}

# `builtin trap` and `command trap` set bash's own traps, past the function: after a cell that may
# have, with what `trap -p DEBUG` and `trap -p RETURN` said at the top level of the cell file (a
# function does not see them), which then removes them there, for good.
__sk_bypass='(builtin|command)[[:space:]].*trap'
__sk_take_traps() { # DEBUG-LINE RETURN-LINE
    local __sk_t __sk_s=DEBUG
    for __sk_t; do
        if [[ $__sk_t ]]; then builtin eval "__sk_grab_trap $__sk_s ${__sk_t#trap }"; else __sk_grab_trap "$__sk_s" -- ''; fi
        __sk_s=RETURN
    done
}

__sk_grab_trap() { # SIGNAL [-- COMMAND SIGNAL] : one line of `trap -p`; the kernel's own are no news
    local -n __sk_var=__sk_user_${1,,}
    case ${3-} in
        "$__sk_gate_debug" | "$__sk_gate_err" | "$__sk_gate_return") ;;
        *) __sk_var=${3-} ;;
    esac
}

# Ending the cell early (an interrupt, a `set -e` failure): a DEBUG trap that simulates `return`
# (extdebug) before each next command until the sourced cell file has returned; loops and functions
# unwind with it.
__sk_abort() { # [status the cell ends with]
    [[ $__sk_in_cell && -z $__sk_unwinding ]] || return 0
    __sk_unwinding=1
    __sk_abort_status=${1-}
    [[ $- == *e* ]] && { builtin set +e; __sk_errexit=1; }
    if builtin shopt -q extdebug; then __sk_had_extdebug=1; else __sk_had_extdebug=; fi
    __sk_had_functrace=${-//[^T]/}
    builtin shopt -s extdebug
    builtin trap -- "$__sk_gate_debug" DEBUG
    __sk_debug_set=1
}

__sk_abort_pending() {
    local __sk_st=$__sk_pending
    __sk_pending=
    [[ $__sk_st == abort ]] && __sk_abort || __sk_abort "$__sk_st"
}

__sk_on_int() {
    __sk_interrupted=1
    __sk_abort
}

# EXIT: under set -e bash ends on an error that only aborts a command at a prompt without -e (an
# unbound variable, `${x:?}`, a bad indirection), running no ERR trap, only this one. Such an end in
# a cell, other than by `exit`, hands the session to a fresh bash in the same process, with this
# one's state: it ends the cell as failed and goes on. Otherwise the user's EXIT trap runs.
__sk_on_exit() { # the positional parameters where the trap runs; $? is the exit status
    __sk_tst=$?
    # (bash's own end on an error has a status of 1 to 127 and leaves $BASH_COMMAND the failing
    # command; `builtin exit N`, past the function, unwinds it to the line that sourced the cell)
    [[ $__sk_in_cell && -z $__sk_exiting && $BASHPID == "$$" && $- == *e* && $__sk_script ]] &&
        (( __sk_tst > 0 && __sk_tst < 128 )) && [[ $BASH_COMMAND != '\. "$__sk_cell"' ]] || return 0
    local __sk_opts=$- __sk_set __sk_shopt
    __sk_set=$(builtin set +o) __sk_shopt=$(builtin shopt -p)
    builtin set +euvxf
    builtin shopt -u nocasematch
    \. "$__sk_dir/handover.bash" || return 0
    # in a function or a sourced file, the trap has theirs: the shell's are those the cell started with
    if (( ${#FUNCNAME[@]} == 3 )); then __sk_hand_over "$@"; else __sk_hand_over "${__sk_argv[@]}"; fi
    return 0
} 59>/dev/null

exit() { # [N] : the builtin; the EXIT trap then knows that the shell was told to end
    local __sk_st=$?
    __sk_exiting=1
    (( $# )) || set -- "$__sk_st"
    builtin exit "$@"
} 59>/dev/null

__sk_recv() { # nonce
    # A SIGINT that came between cells (the late delivery of an interrupt that ended the last one)
    # ran the INT trap before bash read this line: it is no interrupt of this cell.
    __sk_interrupted=
    __sk_take "$1" __sk_allow_stdin __sk_code
    builtin trap -- "$__sk_gate_int" INT
    __sk_in_cell=1 __sk_cell_over=
    __sk_send CWD "$PWD"
    __sk_prepare
}

# A cell that may exec a program: `exec` where a command starts (after assignments, `builtin`,
# `command`, redirections) and then a word that starts no redirection. Only such cells pay for
# the watch (`docker exec`, `exec >log` do not); BASH_COMMAND for an exec, as bash shows it.
__sk_names_exec='(^|[;&|(){}!'$'\n'']|then|do|else)[[:blank:]]*(\\?(builtin|command)[[:blank:]]+|[[:alpha:]_][[:alnum:]_]*=[^[:blank:]]*[[:blank:]]+)*\\?exec([[:blank:]]+[0-9]*[<>]&?[^[:space:];&|()]*)*[[:blank:]]+[^[:space:]0-9<>&{;|)]'
__sk_an_exec='^([[:alpha:]_][[:alnum:]_]*=[^[:space:]]*[[:space:]]+)*(\\?(builtin|command)[[:space:]]+)*\\?exec([[:space:]]|$)'

__sk_prepare() {
    local -
    builtin set +uf
    __sk_wrapped=
    [[ -z $__sk_interrupted ]] && __sk_parse_ok || return 0
    # One line is one command to eval; more lines go in braces, so that an error that aborts a
    # command (an unbound variable, `${x:?}`) aborts the whole cell. The check has parsed them.
    if [[ $__sk_code == *$'\n'* ]]; then
        [[ $__sk_code =~ $__sk_blank ]] || __sk_wrapped="{ $__sk_code"$'\n}'
    else
        __sk_wrapped=$__sk_code
    fi
    [[ $__sk_verbose ]] && builtin printf '%s\n' "$__sk_code" >&2
    [[ $__sk_code =~ $__sk_names_exec ]] && __sk_exec_watch=1
    # The user's -e, -v and DEBUG trap come back at the user's first command (see __sk_debug).
    [[ $__sk_errexit || $__sk_verbose || $__sk_user_debug || $__sk_exec_watch ]] && __sk_starting=1
    return 0  # (a failing kernel function would fire the ERR trap for nothing)
}

# First in the cell file (a sourced file gets no DEBUG trap from outside); $? for the cell.
__sk_start() { # the positional parameters
    __sk_argv=("$@")  # (see __sk_on_exit)
    [[ $__sk_starting ]] && builtin trap -- "$__sk_gate_debug" DEBUG && __sk_debug_set=1
    [[ $__sk_user_return ]] && builtin trap -- "$__sk_gate_return" RETURN && __sk_return_set=1
    return "$__sk_last_status"
}
__sk_blank='^([[:space:]]*(#[^'$'\n'']*)?'$'\n'')*[[:space:]]*(#[^'$'\n'']*)?$'

__sk_strip_newlines() { # var
    local -n __sk_v=$1
    while [[ $__sk_v == *$'\n' ]]; do __sk_v=${__sk_v%$'\n'}; done
}

# Prints bash's complaint about CODE (nothing if it parses) without running any of it: the code is
# the body of a function that is defined and never called, in a subshell, so nothing sticks (`set -n`
# is ignored by an interactive bash). Line numbers are made the cell's own, and the end of the cell
# is the end of the file, as bash would say without the function around it.
__sk_syntax_errors() { # code
    [[ $1 =~ $__sk_blank ]] && return 0  # nothing to run (and an empty function body is an error)
    local err base=$(( LINENO - 3 )); err=$(LC_ALL=C; \builtin eval "__sk_check() { $1"$'\n}' 2>&1)
    [[ $? == 0 ]] && return 0
    if [[ $1 == *\\ ]]; then
        builtin printf 'bash: syntax error: the cell ends with a line continuation (\\)\n'
    elif [[ $err =~ here-document\ at\ line\ ([0-9]+)\ delimited\ by\ end-of-file\ \(wanted\ (.*)\) ]]; then
        builtin printf 'bash: line %d: syntax error: here-document not terminated (wanted %s)\n' \
            "$(( BASH_REMATCH[1] - base ))" "${BASH_REMATCH[2]}"
    else
        local line n out= newlines=${1//[!$'\n']/}
        local lines=$(( ${#newlines} + 1 ))
        while IFS= builtin read -r line; do
            if [[ $line =~ ^.*:\ eval:\ line\ ([0-9]+):\ (.*)$ ]]; then
                n=$(( BASH_REMATCH[1] - base )) line=${BASH_REMATCH[2]}
                if (( n > lines )); then # the closing brace around the cell: its end
                    [[ $line == syntax\ error* ]] || continue
                    line='syntax error: unexpected end of file'
                fi
                line="bash: line $n: ${line/#\`__sk_check() \{ /\`}"
            fi
            out+=$line$'\n'
        done <<< "$err"
        builtin printf '%s' "$out"
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
    err=$(\__sk_syntax_errors "$code")
    [[ -z $err ]] && return 0
    builtin printf '%s\n' "$err" >&2
    __sk_syntax=1
    return 1
}

__sk_done() { # nonce [status] ($? if not given)
    local __sk_st=$?
    (( $# > 1 )) && __sk_st=$2
    # The user's -e and -v stay the user's, but off while the kernel's code runs.
    [[ $__sk_exec_errexit ]] && __sk_exec_errexit= && builtin set -e  # an exec was the cell's last command
    case $- in *e*) __sk_errexit=1; builtin set +e ;; *) [[ $__sk_unwinding || $__sk_resumed ]] || __sk_errexit= ;; esac
    case $- in *v*) __sk_verbose=1; builtin set +v ;; *) [[ $__sk_starting || $__sk_resumed ]] || __sk_verbose= ;; esac
    if [[ $__sk_unwinding ]]; then
        __sk_unwinding=
        [[ $__sk_abort_status ]] && __sk_st=$__sk_abort_status
        __sk_abort_status=
        [[ $__sk_had_extdebug ]] || builtin shopt -u extdebug
        builtin set -E
        [[ $__sk_had_functrace ]] && builtin set -T
    fi
    local -
    builtin set +uf
    __sk_in_cell=
    __sk_sent=$1
    if [[ ${BASH_XTRACEFD-} != 59 ]]; then
        __sk_xtarget=${BASH_XTRACEFD:-2}
        BASH_XTRACEFD=59
    fi
    local flags=
    __sk_starting=
    # Traps: DEBUG and RETURN were taken at the top level of the cell file, ERR here; the kernel's
    # own DEBUG and RETURN traps go on the next line (a function cannot remove them for good).
    __sk_untrap=()
    [[ $__sk_debug_set ]] && __sk_untrap+=(DEBUG)
    [[ $__sk_return_set ]] && __sk_untrap+=(RETURN)
    __sk_debug_set= __sk_return_set=
    if [[ $__sk_code =~ $__sk_bypass ]]; then
        local __sk_t
        __sk_t=$(\builtin trap -p ERR)
        if [[ $__sk_t ]]; then builtin eval "__sk_grab_trap ERR ${__sk_t#trap }"; else __sk_grab_trap ERR -- ''; fi
        builtin trap -- "$__sk_gate_err" ERR
    fi
    if [[ $__sk_interrupted ]]; then
        flags+=i
        __sk_st=130
    elif [[ $__sk_st == 2 && -z $__sk_syntax ]]; then
        # A one-line cell skipped the check: tell a syntax error from a command's own status 2.
        local code=$__sk_code
        __sk_strip_newlines code
        [[ $(\__sk_syntax_errors "$code") ]] && __sk_syntax=1
    fi
    [[ $__sk_syntax ]] && { flags+=s; __sk_st=2; }
    __sk_last_status=$__sk_st
    __sk_interrupted= __sk_syntax= __sk_code= __sk_wrapped= __sk_exec_watch= __sk_exec_errexit=
    if [[ ! -p /dev/fd/$__sk_ctl || ! -p /dev/fd/$__sk_data ]]; then
        builtin printf 'bash: the cell closed the session'"'"'s channel to the kernel; the session ends\n' >&2
        __sk_exiting=1
        builtin exit 1
    fi
    __sk_send DONE "$1" "$__sk_st" "$flags" "$PWD"
}

__sk_lost() { # nonce : the first line of the cell was abandoned (an error at the top level)
    local __sk_st=$?  # (the user's -e may still be on here: no command of this may fail)
    [[ $__sk_sent == "$1" ]] && return 0
    if [[ $__sk_resumed ]]; then  # the first command of a bash that took over (resume.bash)
        __sk_st=$__sk_resumed
        __sk_find_script "$__sk_script_copy"
        \exec {__sk_script_copy}<&-
        [[ $__sk_resume_extdebug ]] && builtin shopt -s extdebug
        if [[ $__sk_resume_functrace ]]; then builtin set -ET; else builtin set -E +T; fi
        __sk_resume_extdebug= __sk_resume_functrace=
    fi
    __sk_done "$1" "$__sk_st"
    __sk_resumed=
}

# The cell's stdin is at EOF for every program; `read` from it asks the frontend instead, when the
# frontend allows input (an input_request, password=True for -s), and sees EOF otherwise.
read() {
    local - __sk_o __sk_p= __sk_s=0 __sk_u=0 OPTIND=1 OPTERR=0
    while getopts ':a:d:ei:n:N:p:rst:u:' __sk_o; do
        case $__sk_o in
            p) __sk_p=$OPTARG ;;
            s) __sk_s=1 ;;
            u) __sk_u=$OPTARG ;;
        esac
    done
    builtin set +eu  # its failure is the caller's (see __sk_err), not one inside
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
} 59>/dev/null

# display [--mime TYPE | --png | --jpeg | --gif | --svg | --html | --markdown | --json | --text] [FILE]
# Shows FILE (or stdin) in the notebook. The bytes are read here, inside the session, and sent
# over the session's private channel; the kernel never opens a path.
display() {
    local - mime= data
    builtin set +euf
    while (( $# )); do
        case $1 in
            --mime) [[ $# -ge 2 ]] || { builtin echo "display: --mime needs a type, e.g. --mime image/png" >&2; return 2; }
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
            -h|--help) builtin echo "usage: display [--mime TYPE | --png | --jpeg | --gif | --svg | --html | --markdown | --json | --latex | --text] [FILE]  (no FILE: read stdin)"; return 0 ;;
            --) shift; break ;;
            -?*) builtin echo "display: unknown option '$1' (see display --help)" >&2; return 2 ;;
            *) break ;;
        esac
        shift
    done
    if (( $# > 1 )); then builtin echo "display: give one file at a time" >&2; return 2; fi
    if [[ -z $mime ]]; then
        case ${1,,} in
            '') builtin echo "display: reading stdin needs a type, e.g. --mime image/svg+xml" >&2; return 2 ;;
            *.png) mime=image/png ;;
            *.jpg|*.jpeg) mime=image/jpeg ;;
            *.gif) mime=image/gif ;;
            *.svg) mime=image/svg+xml ;;
            *.html|*.htm) mime=text/html ;;
            *.md|*.markdown) mime=text/markdown ;;
            *.json) mime=application/json ;;
            *.pdf) mime=application/pdf ;;
            *.txt) mime=text/plain ;;
            *) builtin echo "display: cannot tell the type of '$1'; say it with --mime TYPE" >&2; return 2 ;;
        esac
    fi
    if [[ ! $mime =~ ^[A-Za-z0-9][A-Za-z0-9.+-]*/[A-Za-z0-9][A-Za-z0-9.+-]*$ ]]; then
        builtin echo "display: '$mime' is not a MIME type" >&2
        return 2
    fi
    if (( $# )); then
        data=$(\command base64 -w0 -- "$1") || return 1
    else
        data=$(\command base64 -w0) || return 1
    fi
    __sk_send DISPLAY "$mime" "$data"
} 59>/dev/null

# Requests that are not cells (completion, inspection, is_complete) answer on the control fd and
# leave $? and the cell state as they were.
__sk_query() { # nonce
    local - kind arg
    builtin set +euf
    local -a items=()
    __sk_take "$1" kind arg
    case $kind in
        commands) builtin mapfile -t items < <(\builtin compgen -c -- "$arg") ;;
        variables) builtin mapfile -t items < <(\builtin compgen -v -- "$arg") ;;
        files)
            local f
            while IFS= builtin read -r f; do
                [[ -d $f ]] && f+=/
                items+=("$f")
            done < <(\builtin compgen -f -- "$arg")
            ;;
        inspect)
            items=("$(\builtin type -a -- "$arg" 2>&1)")
            [[ $(\builtin type -t -- "$arg") == builtin || $(\builtin type -t -- "$arg") == keyword ]] &&
                items+=("$(\builtin help -- "$arg" 2>&1)")
            ;;
        parse) items=("$(\__sk_syntax_errors "$arg")") ;;
        jobs) builtin mapfile -t items < <(\builtin jobs -rp) ;;
    esac
    __sk_send REPLY "$1" "${#items[@]}" "${items[@]}"
}

builtin trap -- "$__sk_gate_err" ERR
builtin trap -- "$__sk_gate_exit" EXIT
# Under `set -v`, bash echoes a trap's command each time the trap runs: the kernel leaves the gates
# out of stderr (the user's own trap commands, which the gates eval, still echo as at a prompt).
__sk_send GATES "$__sk_gate_debug"$'\n' "$__sk_gate_err"$'\n' "$__sk_gate_return"$'\n' "$__sk_gate_int"$'\n' "$__sk_gate_exit"$'\n'
