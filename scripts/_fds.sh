# shellcheck shell=bash
# Sourced by scripts/slurm-cluster and scripts/shared-fs: start a daemon with none of our
# descriptors but 0-2. A daemon holds what it inherits for as long as it runs: our own lock
# (fd 9), a caller's `flock FILE scripts/test` lock (held until the cluster is stopped, so every
# other `flock FILE ...` waited for ever), the write end of a `scripts/test | tee` pipe.

# close_inherited_fds: close every descriptor above 2 of this shell (call it in a subshell).
close_inherited_fds() {
    local fd
    for fd in /proc/"$BASHPID"/fd/*; do
        fd="${fd##*/}"
        if ((fd > 2)); then
            eval "exec $fd>&-"
        fi
    done
}

# without_inherited_fds CMD...: run CMD in a subshell with every descriptor above 2 closed.
# In the background use `(close_inherited_fds; exec CMD...) &` instead, so that $! is CMD's pid.
without_inherited_fds() {
    (
        close_inherited_fds
        exec "$@"
    )
}
