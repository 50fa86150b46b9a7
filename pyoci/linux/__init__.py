"""The syscall boundary: only this package touches ctypes, /proc, mount, unshare, setns or pivot_root."""
