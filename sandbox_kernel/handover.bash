# sandbox-kernel: the end of a bash that set -e is ending on an error a prompt without -e survives
# (session.bash, __sk_on_exit, sources this then): it hands the session over to a fresh bash in the
# same process, which starts with resume.bash.
#
# What the fresh bash needs to go on as this one: options, the positional parameters, variables
# (bash's own left out; a variable that a failing function's local shadows as it was outside, a
# local that shadows nothing not at all), the pushd stack, functions, traps, aliases; and the
# cell's status. The cwd, exported variables, umask, limits and the user's fds go with the
# process, as do background jobs, which leave the job table; stdin, stdout and stderr are the
# session's again. The state travels in a here-string (a pipe or an unlinked temporary file), the
# fds' numbers in __SK_RESUME. If the exec fails, this bash ends as it would have.
__sk_hand_over() { # the positional parameters; __sk_opts, __sk_set, __sk_shopt: the user's options
    local __sk_n __sk_d __sk_t __sk_i __sk_state __sk_line
    local -a __sk_names __sk_items=()
    # Options first (extglob changes how functions parse); extdebug and functrace wait for the
    # end of the fresh bash's start-up (__sk_lost), where extdebug does not start a debugger.
    # Through `builtin`: the user's functions are back by then.
    while IFS= builtin read -r __sk_line; do
        case $__sk_line in
            *\ extdebug) [[ $__sk_line == *-s* ]] && __sk_items+=(__sk_resume_extdebug=1) ;;
            *\ login_shell | *\ restricted_shell) ;;
            *) __sk_items+=("builtin $__sk_line") ;;
        esac
    done <<< "$__sk_shopt"
    while IFS= builtin read -r __sk_line; do
        case $__sk_line in  # the kernel's own options, and those the kernel keeps for the user
            *\ errexit) [[ $__sk_opts == *e* ]] && __sk_items+=(__sk_errexit=1) ;;
            *\ verbose) [[ $__sk_opts == *v* ]] && __sk_items+=(__sk_verbose=1) ;;
            *\ functrace) [[ $__sk_opts == *T* ]] && __sk_items+=(__sk_resume_functrace=1) ;;
            *\ history | *\ monitor | *\ histexpand | *\ errtrace | *\ emacs | *\ vi) ;;
            *) __sk_items+=("builtin $__sk_line") ;;
        esac
    done <<< "$__sk_set"
    (( $# )) && __sk_items+=("builtin set -- $(builtin printf '%q ' "$@")")
    builtin mapfile -t __sk_names < <(builtin compgen -v)
    for __sk_n in "${__sk_names[@]}"; do
        [[ $__sk_n =~ $__sk_bash_variables || ( $__sk_n == __sk_* && ! $__sk_n =~ $__sk_kept_variables ) ]] && continue
        # Outward past locals to the global. `declare -g` declares a global where there is none, so
        # that a local which shadows nothing ends on that bare declaration, which is left out.
        builtin declare -g -- "$__sk_n" 2>/dev/null
        __sk_d= __sk_i=0
        while __sk_t=$(builtin declare -p "$__sk_n" 2>/dev/null) && (( ++__sk_i < 100 )); do
            __sk_d=$__sk_t
            if [[ $__sk_t == "declare -n"* ]]; then builtin unset -n "$__sk_n"; else builtin unset -v "$__sk_n"; fi 2>/dev/null || break
        done
        [[ $__sk_d && ( $__sk_i == 1 || $__sk_d != "declare -- $__sk_n" ) ]] && __sk_items+=("$__sk_d")
    done
    for (( __sk_i = ${#DIRSTACK[@]} - 1; __sk_i > 0; __sk_i-- )); do  # the pushd stack, bottom first
        __sk_items+=("builtin pushd -n -- ${DIRSTACK[__sk_i]@Q} >/dev/null")
    done
    builtin mapfile -t __sk_names < <(builtin compgen -A function)
    for __sk_n in "${__sk_names[@]}"; do
        [[ $__sk_n == @(__sk_*|read|display|trap|exit) ]] ||
            { __sk_t=$(builtin declare -f -- "$__sk_n" 2>/dev/null) && __sk_items+=("$__sk_t"); }
    done
    builtin trap - DEBUG ERR RETURN INT EXIT  # the kernel's (the user's are in __sk_user_*)
    __sk_t=$(\builtin trap -p)
    [[ $__sk_t ]] && __sk_items+=("$__sk_t")
    __sk_t=$(builtin alias -p)
    [[ $__sk_t ]] && __sk_items+=("$__sk_t")
    # One eval per item, each quoted whole: what the fresh bash cannot take loses that item alone.
    builtin printf -v __sk_state 'builtin eval -- %q\n' "${__sk_items[@]}"
    [[ $(builtin jobs -p) ]] && builtin printf 'bash: the session goes on in a fresh bash (set -e ends bash on this error): its background jobs keep running but are no longer in `jobs`\n' >&"$__sk_stderr"
    # What would keep the fresh bash from reading resume.bash (posix mode); the state puts it back.
    builtin unset -v POSIXLY_CORRECT ENV
    builtin export -n SHELLOPTS BASHOPTS
    {
        __SK_RESUME="$__sk_data $__sk_ctl $__sk_stdin $__sk_parked $__sk_script_copy $__sk_fd $__sk_tst" \
            builtin exec -a bash /bin/bash --noprofile --noediting --rcfile "$__sk_dir/resume.bash" -i "/dev/fd/$__sk_script_copy" \
            0<&"$__sk_stdin" 1>&"$__sk_stdout" 2>/dev/null {__sk_stdout}>&- {__sk_stderr}>&- {__sk_cellfd}<&-
    } {__sk_parked}>&"$__sk_stderr" {__sk_script_copy}<"/dev/fd/$__sk_script" {__sk_fd}<<< "$__sk_state"
}
# bash's own variables, which a fresh bash sets itself
__sk_bash_variables='^(BASH|BASHOPTS|BASHPID|BASH_ALIASES|BASH_ARG(C|V|V0)|BASH_CMDS|BASH_COMMAND|BASH_EXECUTION_STRING|BASH_LINENO|BASH_REMATCH|BASH_SOURCE|BASH_SUBSHELL|BASH_VERSINFO|BASH_VERSION|BASH_XTRACEFD|BASH_MONOSECONDS|COMP_WORDBREAKS|DIRSTACK|EPOCHREALTIME|EPOCHSECONDS|EUID|FUNCNAME|GROUPS|HISTCMD|HOSTTYPE|LINENO|MACHTYPE|OSTYPE|PIPESTATUS|PPID|PWD|RANDOM|SHELLOPTS|SRANDOM|UID|_)$'
__sk_kept_variables='^__sk_(user_(debug|err|return|exit|ignored)|xtarget)$'
