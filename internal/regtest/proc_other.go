//go:build !linux

package regtest

import "syscall"

// childAttr: only Linux can tie the child's life to ours (Pdeathsig).
func childAttr() *syscall.SysProcAttr { return nil }
