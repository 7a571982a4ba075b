# shellcheck shell=bash
# The Debian packages the test suite needs besides Slurm's (scripts/slurm-cluster installs
# those): one list, sourced by scripts/test, scripts/shared-fs and scripts/other-release (whose
# chroot has no network while its suite runs, so it installs them when it prepares).
#: The browser and terminal tests (test_notebook_browser.py, test_terminal_tmux.py).
FRONTEND_PACKAGES=(chromium chromium-driver tmux)
#: A C compiler and Python's headers: the user-code tests build a tiny extension module.
BUILD_PACKAGES=(gcc python3-dev)
#: The shared filesystem of scripts/shared-fs (test_shared_fs.py).
SHARED_FS_PACKAGES=(glusterfs-server glusterfs-client)
