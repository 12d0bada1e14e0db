package regtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// defaultCallTimeout bounds an RPC call whose context has no deadline.
const defaultCallTimeout = 2 * time.Minute

// maxResponseBytes bounds what one RPC response may make us hold.
const maxResponseBytes = 256 << 20

// RPCError is an error object returned by the node.
type RPCError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *RPCError) Error() string { return fmt.Sprintf("rpc error %d: %s", e.Code, e.Message) }

// rpcConn is a minimal JSON-RPC 1.0 client over HTTP POST with context
// support (rpcclient has none). btcd closes the connection after every
// response ("Connection: close"), so keep-alive is off.
type rpcConn struct {
	url, user, pass string
	hc              *http.Client
}

func newRPCConn(addr, user, pass string) *rpcConn {
	return &rpcConn{
		url:  "http://" + addr + "/",
		user: user,
		pass: pass,
		hc:   &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}},
	}
}

type rpcRequest struct {
	JSONRPC string `json:"jsonrpc"`
	ID      int    `json:"id"`
	Method  string `json:"method"`
	Params  []any  `json:"params"`
}

type rpcResponse struct {
	Result json.RawMessage `json:"result"`
	Error  *RPCError       `json:"error"`
	ID     *int            `json:"id"`
}

// call runs one request and decodes its result into result (if non-nil).
func (c *rpcConn) call(ctx context.Context, method string, result any, params ...any) error {
	if params == nil {
		params = []any{}
	}
	body, err := json.Marshal(rpcRequest{JSONRPC: "1.0", ID: 1, Method: method, Params: params})
	if err != nil {
		return err
	}
	raw, err := c.post(ctx, body)
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	var resp rpcResponse
	if err := json.Unmarshal(raw, &resp); err != nil {
		return fmt.Errorf("%s: decoding response %.200q: %w", method, raw, err)
	}
	if resp.Error != nil {
		return fmt.Errorf("%s: %w", method, resp.Error)
	}
	if result == nil {
		return nil
	}
	if err := json.Unmarshal(resp.Result, result); err != nil {
		return fmt.Errorf("%s: decoding result: %w", method, err)
	}
	return nil
}

// batchCall is one element of a batch request.
type batchCall struct {
	Method string
	Params []any
}

// batch sends calls as one JSON-RPC batch and returns the responses in the
// order of calls. Per-call errors are in the responses' Error fields.
func (c *rpcConn) batch(ctx context.Context, calls []batchCall) ([]rpcResponse, error) {
	if len(calls) == 0 {
		return nil, nil
	}
	reqs := make([]rpcRequest, len(calls))
	for i, bc := range calls {
		p := bc.Params
		if p == nil {
			p = []any{}
		}
		reqs[i] = rpcRequest{JSONRPC: "1.0", ID: i, Method: bc.Method, Params: p}
	}
	body, err := json.Marshal(reqs)
	if err != nil {
		return nil, err
	}
	raw, err := c.post(ctx, body)
	if err != nil {
		return nil, fmt.Errorf("batch of %d %s: %w", len(calls), calls[0].Method, err)
	}
	var resps []rpcResponse
	if err := json.Unmarshal(raw, &resps); err != nil {
		return nil, fmt.Errorf("batch: decoding response %.200q: %w", raw, err)
	}
	out := make([]rpcResponse, len(calls))
	seen := make([]bool, len(calls))
	for _, r := range resps {
		if r.ID == nil || *r.ID < 0 || *r.ID >= len(calls) || seen[*r.ID] {
			return nil, fmt.Errorf("batch: response with unexpected id")
		}
		seen[*r.ID] = true
		out[*r.ID] = r
	}
	for i, ok := range seen {
		if !ok {
			return nil, fmt.Errorf("batch: no response for call %d (%s)", i, calls[i].Method)
		}
	}
	return out, nil
}

func (c *rpcConn) post(ctx context.Context, body []byte) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultCallTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(c.user, c.pass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > maxResponseBytes {
		return nil, errors.New("response too large")
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return nil, errors.New("authentication failed (HTTP 401)")
	case http.StatusServiceUnavailable:
		return nil, fmt.Errorf("node busy (HTTP 503): %s", bytes.TrimSpace(raw))
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("empty response (HTTP %d)", resp.StatusCode)
	}
	return raw, nil
}

func (c *rpcConn) close() { c.hc.CloseIdleConnections() }

// jsonString decodes a JSON string result.
func jsonString(raw json.RawMessage, s *string) error {
	if err := json.Unmarshal(raw, s); err != nil {
		return fmt.Errorf("regtest: expected a JSON string, got %.100q: %w", raw, err)
	}
	return nil
}
