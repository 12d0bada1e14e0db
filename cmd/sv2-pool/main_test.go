package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/declare"
	"github.com/sv2kit/sv2kit/internal/config"
	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

type okAPI struct{}

func (okAPI) ValidateCustomJob(context.Context, string, *messages.SetCustomMiningJob) (declare.Verdict, error) {
	return declare.Verdict{OK: true}, nil
}

func (okAPI) SubmitBlockShare(context.Context, string, declare.BlockShare) (declare.BlockResult, error) {
	return declare.BlockResult{Accepted: true}, nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestServes(t *testing.T) {
	jds := httptest.NewServer(declare.NewHTTPHandler(okAPI{}, hclog.NewNullLogger()))
	defer jds.Close()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "pool.key")
	addr, maddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-pool.listen", addr, "-pool.authority-key-file", keyFile,
			"-jds.api-url", jds.URL, "-metrics.listen", maddr, "-log.level", "error"}, io.Discard)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()

	var c *noise.Conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		key, err := noise.ReadKeyFile(keyFile)
		if err == nil {
			pub := noise.PublicKey(key)
			dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
			c, err = noise.Dial(dctx, "tcp", addr, &noise.Config{AuthorityPubKey: &pub})
			dcancel()
			if err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool not reachable: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer c.Close()
	c.WriteMessage(&messages.SetupConnection{Protocol: messages.ProtocolMining, MinVersion: 2, MaxVersion: 2,
		Flags: messages.FlagRequiresWorkSelection}, codec.Options{})
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if m, _, err := messages.Read(c, codec.Options{}); err != nil || m.MsgType() != messages.TypeSetupConnectionSuccess {
		t.Fatalf("setup answer %v, %v", m, err)
	}
	resp, err := http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "sv2pool_connections 1") {
		t.Errorf("metrics lack sv2pool_connections 1:\n%s", body)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		key  string
	}{
		{[]string{"-pool.plaintext", "true"}, "jds.api-url"},
		{[]string{"-jds.api-url", "http://x", "-pool.authority-secret-key", "nope"}, "pool.authority-secret-key"},
		{[]string{"-jds.api-url", "http://x", "-pool.authority-key-file", ""}, "pool.authority-key-file"},
	} {
		err := run(context.Background(), tc.args, io.Discard)
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != tc.key {
			t.Errorf("%v: got %v, want an error on %s", tc.args, err, tc.key)
		}
	}
}
