package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// JSON-RPC error codes of Bitcoin Core (src/rpc/protocol.h); btcd uses the same.
const (
	CodeMisc              = -1
	CodeInvalidAddrOrKey  = -5 // also "block/transaction not found"
	CodeInvalidParameter  = -8
	CodeNotConnected      = -9  // no peers: getblocktemplate refuses to run
	CodeInitialDownload   = -10 // initial block download
	CodeDeserialization   = -22
	CodeVerify            = -25
	CodeInWarmup          = -28 // starting up: loading the block index, verifying blocks
	CodeMethodNotFound    = -32601
	codeBtcdUnimplemented = -1 // btcd: "Command unimplemented"
)

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("node client closed")

// RPCError is an error object the node returned for a call.
type RPCError struct {
	Code    int
	Message string
}

func (e *RPCError) Error() string {
	return fmt.Sprintf("node error %d: %s", e.Code, e.Message)
}

// HTTPError is an HTTP reply without a JSON-RPC body: 401 (bad credentials),
// 403 (rpcallowip), 503 (Core's work queue is full), or anything else that is
// not JSON-RPC (wrong port, a proxy's error page).
type HTTPError struct {
	Status int
	Body   string
}

func (e *HTTPError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("HTTP %d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("HTTP %d %s: %.200q", e.Status, http.StatusText(e.Status), e.Body)
}

// TransportError means the node could not be reached or did not answer in
// time: it is down, restarting, unreachable or too slow.
type TransportError struct {
	URL     string
	Timeout bool // no answer within the call's timeout
	Err     error
}

func (e *TransportError) Error() string {
	if e.Timeout {
		return fmt.Sprintf("node at %s: %v", e.URL, e.Err)
	}
	return fmt.Sprintf("cannot reach node at %s: %v", e.URL, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// CookieError means the cookie file could not be read. Bitcoin Core deletes
// the cookie when it stops and writes a new one when it starts, so this
// usually means the node is not running; otherwise the path is wrong.
type CookieError struct {
	Path string
	Err  error
}

func (e *CookieError) Error() string {
	return fmt.Sprintf("cookie file %s: %v", e.Path, e.Err)
}

func (e *CookieError) Unwrap() error { return e.Err }

// NetworkError means the node is on another chain than the configured one.
type NetworkError struct {
	URL  string
	Want string
	Got  string
}

func (e *NetworkError) Error() string {
	return fmt.Sprintf("node at %s is on %q, but the configured network is %q", e.URL, e.Got, e.Want)
}

func rpcCode(err error) (int, bool) {
	var re *RPCError
	if errors.As(err, &re) {
		return re.Code, true
	}
	return 0, false
}

func httpStatus(err error) int {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Status
	}
	return 0
}

// IsInitialDownload reports whether the node refused because it is in initial
// block download (-10).
func IsInitialDownload(err error) bool {
	c, ok := rpcCode(err)
	return ok && c == CodeInitialDownload
}

// IsNotConnected reports whether the node refused because it has no peers (-9).
func IsNotConnected(err error) bool {
	c, ok := rpcCode(err)
	return ok && c == CodeNotConnected
}

// IsWarmup reports whether the node is still starting (-28).
func IsWarmup(err error) bool {
	c, ok := rpcCode(err)
	return ok && c == CodeInWarmup
}

// IsAuth reports whether the node rejected our credentials (HTTP 401).
func IsAuth(err error) bool { return httpStatus(err) == http.StatusUnauthorized }

// IsForbidden reports whether the node refused our address (HTTP 403, rpcallowip).
func IsForbidden(err error) bool { return httpStatus(err) == http.StatusForbidden }

// IsBusy reports whether the node's RPC work queue is full (HTTP 503).
func IsBusy(err error) bool { return httpStatus(err) == http.StatusServiceUnavailable }

// IsTransport reports whether the node could not be reached or did not answer
// in time (connection refused or reset, timeout).
func IsTransport(err error) bool {
	var te *TransportError
	return errors.As(err, &te)
}

// IsTimeout reports whether err is a call that got no answer in time.
func IsTimeout(err error) bool {
	var te *TransportError
	return errors.As(err, &te) && te.Timeout
}

// IsCookie reports whether the cookie file could not be read.
func IsCookie(err error) bool {
	var ce *CookieError
	return errors.As(err, &ce)
}

// IsWrongNetwork reports whether the node is on another chain than configured.
func IsWrongNetwork(err error) bool {
	var ne *NetworkError
	return errors.As(err, &ne)
}

// IsNotFound reports "no such block/transaction" (-5).
func IsNotFound(err error) bool {
	c, ok := rpcCode(err)
	return ok && c == CodeInvalidAddrOrKey
}

// Temporary reports whether err is a node state that passes by itself
// (down or restarting, warming up, in initial block download, without peers,
// busy), so the caller should just retry with backoff. Other errors
// (credentials, wrong network, a rejected call) need an operator or a code
// fix; long-running roles still retry them, more slowly, after logging Hint.
func Temporary(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, ErrClosed) {
		return false
	}
	return IsTransport(err) || IsWarmup(err) || IsInitialDownload(err) ||
		IsNotConnected(err) || IsBusy(err) || IsCookie(err)
}

// Hint says in one sentence what an operator should know about err: what is
// wrong and what to do. It returns "" for errors it knows nothing about.
func Hint(err error) string {
	if err == nil {
		return ""
	}
	var (
		te *TransportError
		ce *CookieError
		ne *NetworkError
		he *HTTPError
	)
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded) && !IsTransport(err):
		return ""
	case errors.Is(err, ErrClosed):
		return ""
	case errors.As(err, &ne):
		return fmt.Sprintf("the node at %s runs %s but network is set to %s: point the RPC URL at a %s node "+
			"(Core RPC ports: main 8332, test 18332, testnet4 48332, signet 38332, regtest 18443) or change network",
			ne.URL, ne.Got, ne.Want, ne.Want)
	case errors.As(err, &ce):
		return fmt.Sprintf("cannot read the cookie file %s: the node writes it when it starts and deletes it when it stops, "+
			"so check the node is running and the path is <datadir>/.cookie (<datadir>/<network>/.cookie off mainnet) "+
			"and readable by this user; waiting", ce.Path)
	case errors.As(err, &te) && te.Timeout:
		return fmt.Sprintf("the node at %s did not answer in time: it may be busy (reindexing, loading, a large mempool) "+
			"or hung; check its debug.log; retrying", te.URL)
	case errors.As(err, &te):
		return fmt.Sprintf("cannot reach the node at %s: is it running, is rpcbind/rpcallowip set, is the port right? retrying", te.URL)
	case IsNotConnected(err):
		return "the node has no peers; getblocktemplate refuses to work until it connects (check connect=/addnode=/network and that the node is online); waiting"
	case IsInitialDownload(err):
		return "the node is in initial block download; templates are available once it has caught up; waiting"
	case IsWarmup(err):
		return "the node is starting (loading the block index or verifying blocks); waiting"
	case errors.As(err, &he):
		switch he.Status {
		case http.StatusUnauthorized:
			return "authentication failed: check rpcuser/rpcpassword, or the cookie file path (it must be the running node's <datadir>/[network/].cookie)"
		case http.StatusForbidden:
			return "the node refused this client's address: add rpcallowip=<this host's IP> and a matching rpcbind= to bitcoin.conf"
		case http.StatusServiceUnavailable:
			return "the node's RPC work queue is full: it is overloaded; raise rpcworkqueue/rpcthreads or reduce other RPC load; retrying"
		case http.StatusNotFound:
			return "the URL path is not a JSON-RPC endpoint: use http://host:port without a path"
		default:
			return fmt.Sprintf("the node answered HTTP %d without a JSON-RPC reply: is the URL the node's RPC port (not the P2P or ZMQ port)?", he.Status)
		}
	}
	if c, ok := rpcCode(err); ok && c == CodeMethodNotFound {
		return "the node does not know this RPC method: it may be too old or a different implementation"
	}
	return ""
}
