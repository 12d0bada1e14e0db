package node

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
)

// coreServer answers JSON-RPC exactly the way Bitcoin Core's HTTP server does
// (src/httprpc.cc): 401 with an empty body for bad credentials, HTTP 500 with
// the JSON error object for RPC errors (404 for an unknown method), 503 with a
// plain text body when the work queue is full, batches as JSON arrays with
// HTTP 200. It is used for what btcd cannot produce: -9, -10, -28, cookie
// authentication, a node that hangs.
type coreServer struct {
	t   *testing.T
	srv *httptest.Server

	mu         sync.Mutex
	user, pass string // fixed credentials, or
	cookiePath string // read on every request, like Core checks its cookie
	tip        chainhash.Hash
	tipHeight  int64
	tipChanged chan struct{} // closed when the tip changes
	failCode   int           // when non-zero every call fails with this RPC error
	failMsg    string
	httpStatus int // when non-zero every call gets this plain HTTP reply
	httpBody   string
	hang       chan struct{} // when non-nil, calls block until it is closed
	chain      string
	mempool    map[string]string // txid → raw hex

	calls   atomic.Int64
	methods sync.Map // method → *atomic.Int64
}

func newCoreServer(t *testing.T) *coreServer {
	t.Helper()
	s := &coreServer{t: t, user: "alice", pass: "secret", tipChanged: make(chan struct{}), chain: "regtest",
		mempool: map[string]string{}}
	s.tip[0] = 1
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() {
		s.setHang(false) // release blocked handlers so Close does not wait
		s.srv.Close()
	})
	return s
}

func (s *coreServer) url() string { return s.srv.URL }

func (s *coreServer) setFail(code int, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failCode, s.failMsg = code, msg
}

func (s *coreServer) setHTTP(status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.httpStatus, s.httpBody = status, body
}

func (s *coreServer) setHang(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on && s.hang == nil {
		s.hang = make(chan struct{})
	}
	if !on && s.hang != nil {
		close(s.hang)
		s.hang = nil
	}
}

func (s *coreServer) setTip(h chainhash.Hash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tip = h
	s.tipHeight++
	close(s.tipChanged)
	s.tipChanged = make(chan struct{})
}

func (s *coreServer) methodCalls(m string) int64 {
	v, ok := s.methods.Load(m)
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}

func (s *coreServer) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	if !strings.HasPrefix(h, "Basic ") {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(h, "Basic "))
	if err != nil {
		return false
	}
	s.mu.Lock()
	want := s.user + ":" + s.pass
	path := s.cookiePath
	s.mu.Unlock()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		want = strings.TrimSpace(string(b))
	}
	return string(raw) == want
}

type coreReq struct {
	Method string            `json:"method"`
	Params []json.RawMessage `json:"params"`
	ID     json.RawMessage   `json:"id"`
}

func (s *coreServer) serve(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	if !s.authorized(r) {
		// Core: 401, WWW-Authenticate, no body.
		w.Header().Set("WWW-Authenticate", `Basic realm="jsonrpc"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	s.mu.Lock()
	status, body, hang := s.httpStatus, s.httpBody, s.hang
	s.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-r.Context().Done():
			return
		}
	}
	if status != 0 {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(status)
		io.WriteString(w, body)
		return
	}
	in, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	if bytes.HasPrefix(bytes.TrimSpace(in), []byte("[")) {
		var reqs []coreReq
		if err := json.Unmarshal(in, &reqs); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var out []json.RawMessage
		for _, q := range reqs {
			res, rerr, _ := s.dispatch(r, q)
			out = append(out, reply(q.ID, res, rerr))
		}
		b, _ := json.Marshal(out)
		w.Write(b)
		return
	}
	var q coreReq
	if err := json.Unmarshal(in, &q); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	res, rerr, httpCode := s.dispatch(r, q)
	w.WriteHeader(httpCode)
	w.Write(reply(q.ID, res, rerr))
}

func reply(id json.RawMessage, res any, rerr *RPCError) json.RawMessage {
	m := map[string]any{"result": res, "error": nil, "id": id}
	if rerr != nil {
		m["error"] = map[string]any{"code": rerr.Code, "message": rerr.Message}
	}
	b, _ := json.Marshal(m)
	return b
}

func (s *coreServer) dispatch(r *http.Request, q coreReq) (any, *RPCError, int) {
	v, _ := s.methods.LoadOrStore(q.Method, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
	s.mu.Lock()
	failCode, failMsg := s.failCode, s.failMsg
	tip, height, changed, chain := s.tip, s.tipHeight, s.tipChanged, s.chain
	s.mu.Unlock()
	if failCode != 0 {
		return nil, &RPCError{Code: failCode, Message: failMsg}, http.StatusInternalServerError
	}
	switch q.Method {
	case "getbestblockhash":
		return tip.String(), nil, http.StatusOK
	case "submitblock":
		return nil, nil, http.StatusOK // accepted
	case "getblockcount":
		return height, nil, http.StatusOK
	case "getblockchaininfo":
		return map[string]any{"chain": chain, "blocks": height, "headers": height, "bestblockhash": tip.String(),
			"initialblockdownload": false, "warnings": []string{}}, nil, http.StatusOK
	case "getnetworkinfo":
		return map[string]any{"version": 270100, "subversion": "/Satoshi:27.1.0/", "protocolversion": 70016,
			"connections": 8, "networkactive": true}, nil, http.StatusOK
	case "getrawtransaction":
		var id string
		if len(q.Params) > 0 {
			json.Unmarshal(q.Params[0], &id)
		}
		s.mu.Lock()
		raw, ok := s.mempool[id]
		s.mu.Unlock()
		if !ok {
			return nil, &RPCError{Code: -5, Message: "No such mempool or blockchain transaction. Use gettransaction for wallet transactions."}, http.StatusInternalServerError
		}
		return raw, nil, http.StatusOK
	case "getblocktemplate":
		var req struct {
			LongPollID string `json:"longpollid"`
		}
		if len(q.Params) > 0 {
			json.Unmarshal(q.Params[0], &req)
		}
		if req.LongPollID != "" && strings.HasPrefix(req.LongPollID, tip.String()) {
			select {
			case <-changed:
			case <-r.Context().Done():
				return nil, nil, http.StatusOK
			}
			s.mu.Lock()
			tip, height = s.tip, s.tipHeight
			s.mu.Unlock()
		}
		return map[string]any{
			"version": 0x20000000, "rules": []string{"csv", "!segwit", "taproot"}, "vbavailable": map[string]int{},
			"vbrequired": 0, "previousblockhash": tip.String(), "transactions": []any{},
			"coinbaseaux": map[string]string{}, "coinbasevalue": 5000000000, "longpollid": tip.String() + "1",
			"target": "7fffff0000000000000000000000000000000000000000000000000000000000", "mintime": 1700000000,
			"mutable": []string{"time", "transactions", "prevblock"}, "noncerange": "00000000ffffffff",
			"sigoplimit": 80000, "sizelimit": 4000000, "weightlimit": 4000000, "curtime": time.Now().Unix(),
			"bits": "207fffff", "height": height + 1,
			"default_witness_commitment": "6a24aa21a9ede2f61c3f71d1defd3fa999dfa36953755c690689799962b48bebd836974e8cf9",
		}, nil, http.StatusOK
	}
	return nil, &RPCError{Code: CodeMethodNotFound, Message: "Method not found"}, http.StatusNotFound
}

// writeCookie writes a cookie file the way Core does: "__cookie__:<hex>".
func writeCookie(t *testing.T, path, pass string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("__cookie__:"+pass), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func hashN(n byte) chainhash.Hash {
	var h chainhash.Hash
	for i := range h {
		h[i] = n + byte(i)
	}
	return h
}
