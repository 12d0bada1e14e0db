package tpserver

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/node"
)

// coreStub answers JSON-RPC the way Bitcoin Core's HTTP server does for
// the node states btcd cannot produce (initial block download -10, no
// peers -9): HTTP 500 with the JSON error object.
type coreStub struct {
	mu   sync.Mutex
	code int
	msg  string
}

func (c *coreStub) set(code int, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.code, c.msg = code, msg
}

func (c *coreStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Method string          `json:"method"`
		ID     json.RawMessage `json:"id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	code, msg := c.code, c.msg
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch req.Method {
	case "getblockchaininfo":
		_ = json.NewEncoder(w).Encode(map[string]any{"id": req.ID, "error": nil, "result": map[string]any{
			"chain": "regtest", "blocks": 100, "headers": 100, "initialblockdownload": code == node.CodeInitialDownload,
			"bestblockhash": "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206", "mediantime": 1700000000,
			"verificationprogress": 1.0, "pruned": false, "warnings": ""}})
	case "getbestblockhash":
		_ = json.NewEncoder(w).Encode(map[string]any{"id": req.ID, "error": nil,
			"result": "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"})
	default:
		w.WriteHeader(http.StatusInternalServerError)
		_ = json.NewEncoder(w).Encode(map[string]any{"id": req.ID, "result": nil, "error": map[string]any{"code": code, "message": msg}})
	}
}

// TestNodeStateHints: a node in initial block download, then without
// peers: each is logged once with what to do and counted by class, the
// client stays connected, tp keeps retrying.
func TestNodeStateHints(t *testing.T) {
	t.Parallel()
	stub := &coreStub{}
	stub.set(node.CodeInitialDownload, "Bitcoin Core is in initial sync and waiting for blocks...")
	srv := httptest.NewServer(stub)
	t.Cleanup(srv.Close)
	nc, err := node.NewClient(node.Config{URL: srv.URL, User: "u", Password: "p", Network: "regtest", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	tp := startTP(t, nc, nil)
	c := tp.dial(t, 10)
	tp.logs.waitFor(t, "class=initial-block-download", 10*time.Second)
	tp.logs.waitFor(t, "templates are available once it has caught up", time.Second)
	stub.set(node.CodeNotConnected, "Bitcoin is not connected!")
	tp.logs.waitFor(t, "class=no-peers", 10*time.Second)
	tp.logs.waitFor(t, "the node has no peers", time.Second)
	if tp.metric(t, "tp_node_errors_total", "class", "initial-block-download") < 1 || tp.metric(t, "tp_node_errors_total", "class", "no-peers") < 1 {
		t.Fatal("node errors not counted by class")
	}
	if c.Err() != nil {
		t.Fatalf("client disconnected: %v", c.Err())
	}
}
