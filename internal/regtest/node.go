// Package regtest starts and controls a real btcd node in regression-test
// mode for tests and for the demo, and gives it a funded key (Wallet) that
// sends real signed segwit transactions.
//
// The node is btcd built from the module cache at the version go.mod pins
// (see BuildBtcd). Each Node is one child process with its own directory,
// loopback ports and random RPC credentials; it is stopped by its owner
// (Start registers Stop with t.Cleanup; StartProcess's caller calls Stop).
// On Linux the child is also killed by the kernel if the owning process dies.
//
// What btcd v0.24.2 does differently from Bitcoin Core, as far as code
// built on this harness is concerned (each is exercised in the tests):
//
//   - --regtest deletes the block database at every start; Restart replays
//     the previous run's blocks (replay.go). The mempool is never persisted.
//   - Segwit, CSV and taproot activate by BIP9 signalling at height 432, not
//     from genesis; Start mines to 431 first (SegwitHeight). BIP34 (height
//     in the coinbase) is not enforced on btcd's regtest.
//   - getblocktemplate: works without peers on regtest and ignores "rules";
//     default_witness_commitment is the bare 32-byte commitment (Core: the
//     whole script 6a24aa21a9ed<commitment>) and is absent when no template
//     transaction has a witness; there is no "rules", "vbavailable" or
//     "vbrequired". A template picks up new mempool transactions only on a
//     new tip or 60 s after it was generated, and a long poll wakes on a new
//     block at once but on mempool changes only after those 60 s.
//   - Proposal mode: null when valid (PoW is not checked), a BIP22 reason
//     string when invalid, "bad-prevblk" for a stale parent (Core:
//     "inconclusive-not-best-prevblk"). submitblock of a known block answers
//     "rejected: already have block <hash>" (Core: "duplicate").
//   - No generatetoaddress (generate pays --miningaddr), no getnetworkinfo,
//     no getmempoolentry; getbestblock and getinfo exist. gettxout ignores
//     spends in the mempool. testmempoolaccept needs both parameters.
//   - BIP125-signalling transactions are replaceable (no full RBF).
//   - Blocks mined in quick succession get timestamps ahead of the clock
//     (median time past + 1): about 70 s after the 431 activation blocks.
package regtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/rpcclient"
)

const (
	// DefaultStartTimeout bounds how long a start waits for RPC to answer.
	DefaultStartTimeout = 30 * time.Second
	// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
	stopGrace = 10 * time.Second
	// startAttempts is how often a first start retries on a port clash.
	startAttempts = 5
)

// Options configures a node. The zero value is ready to use.
type Options struct {
	// ExtraArgs are appended to btcd's command line (after the harness's
	// own flags, so a repeated single-valued flag overrides the harness's).
	ExtraArgs []string
	// Logf receives the harness's progress lines; nil discards them (Start
	// defaults it to t.Logf).
	Logf func(format string, args ...any)
	// BtcdPath is a btcd binary to run; empty means BuildBtcd.
	BtcdPath string
	// StartTimeout bounds each wait for RPC to answer; 0 means
	// DefaultStartTimeout.
	StartTimeout time.Duration
	// NoActivation leaves a fresh chain at height 0. By default a node
	// whose chain is below SegwitHeight-1 mines up to it first, because
	// btcd's regtest activates segwit (and CSV, taproot) through BIP9
	// signalling and not from genesis as Bitcoin Core does.
	NoActivation bool
}

// SegwitHeight is the first block height at which btcd's regtest enforces
// segwit (and CSV and taproot) when every block signals: BIP9 with
// 144-block windows goes STARTED at 144, LOCKED_IN at 288, ACTIVE at 432.
// Start mines to SegwitHeight-1 so the next block and the mempool accept
// segwit transactions.
const SegwitHeight = 432

// Node is a btcd regtest node run as a child process.
type Node struct {
	bin              string
	dir              string
	dataDir          string
	logPath          string
	user, pass       string
	rpcAddr, p2pAddr string
	extra            []string
	logf             func(string, ...any)
	startTimeout     time.Duration
	rpc              *rpcConn
	wallet           *Wallet

	mu      sync.Mutex // guards proc, client and lastTip
	proc    *process
	client  *rpcclient.Client
	lastTip *tip // the tip before the last stop, to check a restart

	genMu sync.Mutex // btcd refuses a generate while another runs
}

// process is one run of btcd. Its waiter goroutine is the only reader of
// cmd.Wait and ends when the process exits; Stop and Kill make sure it does.
type process struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	err     error         // cmd.Wait's result; read only after done
	logFrom int64         // log offset where this run's output begins
}

// Start builds btcd if needed, starts a regtest node in a t.TempDir, waits
// until its RPC answers and registers its Stop with t.Cleanup. It skips the
// test in -short mode (a real node is not a short test). When the test has
// failed, the tail of btcd's log is printed at cleanup.
func Start(t testing.TB, opts Options) *Node {
	t.Helper()
	if testing.Short() {
		t.Skip("regtest: needs a btcd node; skipped in -short mode")
	}
	ctx := context.Background()
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, dl)
			defer cancel()
		}
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	n, err := StartProcess(ctx, t.TempDir(), opts)
	if err != nil {
		t.Fatalf("regtest: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("regtest: tail of %s:\n%s", n.logPath, n.LogTail(8<<10))
		}
		if err := n.Stop(); err != nil {
			t.Errorf("regtest: stopping btcd: %v", err)
		}
	})
	return n
}

// StartProcess is Start without testing: it starts a node whose files live
// in dir (created if needed) and returns once RPC answers and (unless
// opts.NoActivation) segwit is active. The caller owns the node and must
// call Stop. The chain always starts empty: btcd --regtest deletes any
// block database it finds at start (only Restart carries a chain over).
func StartProcess(ctx context.Context, dir string, opts Options) (*Node, error) {
	bin := opts.BtcdPath
	if bin == "" {
		var err error
		if bin, err = BuildBtcd(ctx); err != nil {
			return nil, err
		}
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("regtest: %w", err)
	}
	w, err := newWallet()
	if err != nil {
		return nil, err
	}
	n := &Node{
		bin:          bin,
		dir:          dir,
		dataDir:      filepath.Join(dir, "data"),
		logPath:      filepath.Join(dir, "btcd.out"),
		user:         randomHex(8),
		pass:         randomHex(16),
		extra:        append([]string(nil), opts.ExtraArgs...),
		logf:         opts.Logf,
		startTimeout: opts.StartTimeout,
		wallet:       w,
	}
	if n.logf == nil {
		n.logf = func(string, ...any) {}
	}
	if n.startTimeout <= 0 {
		n.startTimeout = DefaultStartTimeout
	}
	w.node = n

	var lastErr error
	for attempt := 0; attempt < startAttempts; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			return nil, err
		}
		n.rpcAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		n.p2pAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
		n.rpc = newRPCConn(n.rpcAddr, n.user, n.pass)
		start := time.Now()
		lastErr = n.launch(ctx)
		if lastErr == nil {
			n.logf("regtest: btcd up in %v (rpc %s, p2p %s, dir %s)", time.Since(start).Round(time.Millisecond), n.rpcAddr, n.p2pAddr, dir)
			if !opts.NoActivation {
				if err := n.activate(ctx); err != nil {
					_ = n.Stop()
					return nil, err
				}
			}
			return n, nil
		}
		if !errors.Is(lastErr, errAddrInUse) || ctx.Err() != nil {
			break
		}
		n.logf("regtest: port clash, retrying with new ports: %v", lastErr)
	}
	return nil, lastErr
}

// activate mines a fresh chain up to SegwitHeight-1 and checks that btcd
// then reports segwit active.
func (n *Node) activate(ctx context.Context) error {
	h, err := n.Height(ctx)
	if err != nil {
		return fmt.Errorf("regtest: %w", err)
	}
	if h < SegwitHeight-1 {
		start := time.Now()
		if _, err := n.Generate(ctx, int(SegwitHeight-1-h)); err != nil {
			return err
		}
		n.logf("regtest: mined %d blocks to activate segwit in %v", SegwitHeight-1-h, time.Since(start).Round(time.Millisecond))
	}
	var info struct {
		Softforks map[string]struct {
			Status string `json:"status"`
		} `json:"bip9_softforks"`
	}
	if err := n.rpc.call(ctx, "getblockchaininfo", &info); err != nil {
		return fmt.Errorf("regtest: %w", err)
	}
	if st := info.Softforks["segwit"].Status; st != "active" {
		return fmt.Errorf("regtest: segwit is %q at height %d, want active", st, max(h, SegwitHeight-1))
	}
	return nil
}

var errAddrInUse = errors.New("address already in use")

// args is btcd's command line. Besides network, credentials, addresses and
// directories: --notls because btcd serves plain HTTP only on loopback and
// our clients speak HTTP; --miningaddr because btcd's generate has no
// address argument (no generatetoaddress); --txindex so getrawtransaction
// finds confirmed transactions; --nocfilters to skip the BIP157 index;
// --blockprioritysize=0 so templates are ordered by fee rate alone, as in
// Bitcoin Core (btcd otherwise fills 50 kB by coin-age priority first);
// --blockmaxweight=3996000 for Core's template weight (btcd's default is
// 3000000); --rpcmaxclients=100 since every HTTP request in flight counts
// (long polls included; btcd's default is 10); --nostalldetect so test
// peers are not dropped as stalled.
func (n *Node) args() []string {
	a := []string{
		"--regtest",
		"--notls", // RPC over plain HTTP on loopback (btcd allows it only there)
		"--rpcuser=" + n.user,
		"--rpcpass=" + n.pass,
		"--rpclisten=" + n.rpcAddr,
		"--listen=" + n.p2pAddr,
		"--datadir=" + n.dataDir,
		"--logdir=" + filepath.Join(n.dir, "logs"),
		"--miningaddr=" + n.wallet.addr.EncodeAddress(), // generate pays the harness key
		"--txindex",                                     // getrawtransaction for confirmed txs
		"--nocfilters",                                  // no BIP157 index: faster blocks
		"--blockprioritysize=0",                         // templates ordered by fee rate only (as Core)
		"--blockmaxweight=3996000",                      // Core's default template weight
		"--rpcmaxclients=100",                           // HTTP requests in flight (long polls count)
		"--nostalldetect",                               // no stall disconnects between test peers
	}
	return append(a, n.extra...)
}

// launch starts one btcd process and waits until its RPC answers. On
// failure the process is gone and the error carries the log tail.
func (n *Node) launch(ctx context.Context) error {
	logFile, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("regtest: %w", err)
	}
	args := n.args()
	from, _ := logFile.Seek(0, io.SeekEnd)
	fmt.Fprintf(logFile, "=== regtest: %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd := exec.Command(n.bin, args...)
	cmd.Dir = n.dir
	cmd.Env = append(withoutEnv(os.Environ(), "HOME"), "HOME="+n.dir) // btcd creates $HOME/.btcd
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childAttr()
	err = cmd.Start()
	logFile.Close() // the child has its own descriptor
	if err != nil {
		return fmt.Errorf("regtest: starting %s: %w", n.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), logFrom: from}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	n.mu.Lock()
	n.proc = p
	n.mu.Unlock()

	if err := n.waitReady(ctx, p); err != nil {
		_ = n.stopProcess(false)
		tail := n.tailFrom(p.logFrom, 4<<10)
		if isAddrInUse(tail) {
			err = fmt.Errorf("%w: %v", errAddrInUse, err)
		}
		return fmt.Errorf("regtest: btcd did not start: %w\n--- %s (tail) ---\n%s", err, n.logPath, tail)
	}
	return nil
}

func (n *Node) waitReady(ctx context.Context, p *process) error {
	ctx, cancel := context.WithTimeout(ctx, n.startTimeout)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		var height int64
		err := n.rpc.call(cctx, "getblockcount", &height)
		ccancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("btcd exited: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("RPC not answering after %v: %v", n.startTimeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stopProcess ends the current btcd process: SIGTERM and up to stopGrace
// for a clean shutdown when graceful, else (or then) SIGKILL. It returns
// once the process has exited.
func (n *Node) stopProcess(graceful bool) error {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		return nil
	}
	var err error
	select {
	case <-p.done:
		err = fmt.Errorf("btcd had already exited: %v", p.err)
	default:
		if graceful {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
				if p.err != nil {
					err = fmt.Errorf("btcd exited uncleanly: %v", p.err)
				}
			case <-time.After(stopGrace):
				_ = p.cmd.Process.Kill()
				<-p.done
				err = fmt.Errorf("btcd did not stop within %v of SIGTERM; killed", stopGrace)
			}
		} else {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	n.mu.Lock()
	if n.proc == p {
		n.proc = nil
	}
	n.mu.Unlock()
	return err
}

// Stop shuts btcd down cleanly (SIGTERM, then SIGKILL after 10 s) and
// releases the node's clients. It is idempotent; the data directory stays.
// It reports an error if btcd had exited on its own or did not exit cleanly.
func (n *Node) Stop() error {
	n.noteTip()
	err := n.stopProcess(true)
	n.mu.Lock()
	if n.client != nil {
		n.client.Shutdown()
		n.client.WaitForShutdown()
		n.client = nil
	}
	n.mu.Unlock()
	n.rpc.close()
	if err != nil {
		return fmt.Errorf("regtest: %w", err)
	}
	return nil
}

// Kill ends btcd with SIGKILL (for crash tests) and waits for it to exit.
// Restart brings it back with its chain.
func (n *Node) Kill() error {
	n.noteTip()
	return n.stopProcess(false)
}

// Restart stops btcd if it runs (cleanly) and starts it again with the same
// data directory, ports and credentials, and the same chain. btcd --regtest
// wipes its block database at every start, so Restart sets the database
// aside while btcd is down and replays its blocks into the new process with
// submitblock (see replay.go); it fails if the tip that comes back is not
// the tip the node had. btcd does not persist its mempool: the restarted
// node's mempool is empty, and the wallet forgets its unconfirmed
// transactions accordingly.
func (n *Node) Restart(ctx context.Context) error {
	n.noteTip()
	if err := n.stopProcess(true); err != nil {
		n.logf("regtest: restart: %v", err)
	}
	n.wallet.invalidate()
	start := time.Now()
	saved, err := n.setAsideBlocks()
	if err != nil {
		return err
	}
	// The ports were ours a moment ago; something else may hold one
	// briefly. Retry a few times before giving up: they must not change.
	for attempt := 0; ; attempt++ {
		if err = n.launch(ctx); err == nil {
			break
		}
		if !errors.Is(err, errAddrInUse) || ctx.Err() != nil || attempt == startAttempts-1 {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
	if saved == "" {
		n.logf("regtest: btcd restarted in %v (no chain to replay)", time.Since(start).Round(time.Millisecond))
		return nil
	}
	replayed, err := n.replayBlocks(ctx, saved)
	if err != nil {
		return err
	}
	got, err := n.bestBlock(ctx)
	if err != nil {
		return fmt.Errorf("regtest: after replay: %w", err)
	}
	n.mu.Lock()
	want := n.lastTip
	n.mu.Unlock()
	if want != nil && got != *want {
		return fmt.Errorf("regtest: restart replayed %d blocks to tip %v; before the restart the tip was %v", replayed, got, *want)
	}
	if err := os.RemoveAll(saved); err != nil {
		return fmt.Errorf("regtest: %w", err)
	}
	n.logf("regtest: btcd restarted in %v, %d blocks replayed, tip %v", time.Since(start).Round(time.Millisecond), replayed, got)
	return nil
}

// noteTip records the tip of a running node, so that Restart can check it
// gets the same chain back.
func (n *Node) noteTip() {
	if !n.Running() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if t, err := n.bestBlock(ctx); err == nil {
		n.mu.Lock()
		n.lastTip = &t
		n.mu.Unlock()
	}
}

// Running reports whether the btcd process is alive.
func (n *Node) Running() bool {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// RPCAddr is the RPC listen address, host:port on 127.0.0.1.
func (n *Node) RPCAddr() string { return n.rpcAddr }

// RPCUser is the RPC user name.
func (n *Node) RPCUser() string { return n.user }

// RPCPass is the RPC password.
func (n *Node) RPCPass() string { return n.pass }

// P2PAddr is the peer-to-peer listen address, host:port on 127.0.0.1.
func (n *Node) P2PAddr() string { return n.p2pAddr }

// DataDir is btcd's --datadir (btcd stores the chain in DataDir/regtest).
func (n *Node) DataDir() string { return n.dataDir }

// LogPath is the file that holds btcd's stdout and stderr (all runs).
func (n *Node) LogPath() string { return n.logPath }

// Params are the chain parameters of the node (regtest).
func (n *Node) Params() *chaincfg.Params { return &chaincfg.RegressionNetParams }

// Wallet is the harness key that generate pays.
func (n *Node) Wallet() *Wallet { return n.wallet }

// Client returns an rpcclient in HTTP POST mode without TLS, created on
// first use and shut down by Stop. It keeps working across Restart.
func (n *Node) Client() *rpcclient.Client {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.client == nil {
		c, err := rpcclient.New(&rpcclient.ConnConfig{
			Host:         n.rpcAddr,
			User:         n.user,
			Pass:         n.pass,
			HTTPPostMode: true,
			DisableTLS:   true,
		}, nil)
		if err != nil { // only on an invalid config, which this is not
			panic(fmt.Sprintf("regtest: rpcclient.New: %v", err))
		}
		n.client = c
	}
	return n.client
}

// Call runs one JSON-RPC method with context support and decodes its result
// into result (which may be nil). Errors from the node are *RPCError
// (wrapped; use errors.As).
func (n *Node) Call(ctx context.Context, method string, result any, params ...any) error {
	return n.rpc.call(ctx, method, result, params...)
}

// Height is the current chain height.
func (n *Node) Height(ctx context.Context) (int32, error) {
	var h int32
	err := n.rpc.call(ctx, "getblockcount", &h)
	return h, err
}

// Generate mines k blocks with btcd's generate RPC; the coinbases pay the
// harness wallet (--miningaddr). Calls are serialised: btcd rejects a
// generate while another runs. Cancelling ctx abandons the wait, not the
// mining.
func (n *Node) Generate(ctx context.Context, k int) ([]*chainhash.Hash, error) {
	if k <= 0 {
		return nil, fmt.Errorf("regtest: generate %d blocks", k)
	}
	n.genMu.Lock()
	defer n.genMu.Unlock()
	var strs []string
	if err := n.rpc.call(ctx, "generate", &strs, k); err != nil {
		return nil, fmt.Errorf("regtest: %w", err)
	}
	hashes := make([]*chainhash.Hash, len(strs))
	for i, s := range strs {
		h, err := chainhash.NewHashFromStr(s)
		if err != nil {
			return nil, fmt.Errorf("regtest: generate returned %q: %w", s, err)
		}
		hashes[i] = h
	}
	return hashes, nil
}

// LogTail returns up to max bytes from the end of btcd's log.
func (n *Node) LogTail(max int) string { return n.tailFrom(0, max) }

func (n *Node) tailFrom(from int64, max int) string {
	f, err := os.Open(n.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Sprintf("(log: %v)", err)
	}
	if end-from > int64(max) {
		from = end - int64(max)
	}
	buf := make([]byte, end-from)
	if _, err := f.ReadAt(buf, from); err != nil && err != io.EOF {
		return fmt.Sprintf("(log: %v)", err)
	}
	return string(buf)
}

// freePorts returns k distinct free TCP ports on 127.0.0.1. They are free
// when we look; a start that loses the race retries with new ones.
func freePorts(k int) ([]int, error) {
	ls := make([]net.Listener, 0, k)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, k)
	for i := 0; i < k; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("regtest: finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func withoutEnv(env []string, key string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}
