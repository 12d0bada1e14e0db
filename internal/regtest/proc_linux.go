package regtest

import "syscall"

// childAttr makes the kernel kill btcd when the test process dies without
// running its cleanups (a `go test` timeout, a SIGKILL), so no node outlives
// its owner.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
