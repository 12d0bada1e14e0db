package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/internal/config"
)

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		key  string
	}{
		{[]string{"-miner.devices", "0"}, "miner.devices"},
		{[]string{"-miner.hash-rate", "-1"}, "miner.hash-rate"},
		{[]string{"-miner.authority-public-key", "nope"}, "miner.authority-public-key"},
	} {
		err := run(context.Background(), tc.args, io.Discard)
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != tc.key {
			t.Errorf("%v: got %v, want an error on %s", tc.args, err, tc.key)
		}
	}
}

// TestRunsAndStops: with no server the devices keep retrying, metrics are
// served, and cancelling stops everything.
func TestRunsAndStops(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	maddr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-miner.addr", "127.0.0.1:1", "-miner.devices", "2", "-metrics.listen", maddr,
			"-log.level", "error"}, io.Discard)
	}()
	var body []byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + maddr + "/metrics")
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(string(body), "sv2cpuminer_devices_connected 0") {
		t.Errorf("metrics:\n%s", body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop")
	}
}
