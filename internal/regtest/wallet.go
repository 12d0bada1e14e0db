package regtest

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

const (
	// DefaultFeeRate is the fee rate (sat/vB) of a send that names none.
	DefaultFeeRate = 2.0
	// DustLimit is the smallest output (sat) the wallet creates.
	DustLimit = 1000
	// splitOutputs is how many outputs one split transaction makes
	// (about 31 kvB, well under the 100 kvB standardness limit).
	splitOutputs = 1000
	// broadcastBatch is how many transactions go in one JSON-RPC batch.
	broadcastBatch = 250
	// blockBatch is how many blocks are fetched in one JSON-RPC batch.
	blockBatch = 20

	// seqNoRBF is the input sequence of the wallet's transactions: final
	// for BIP68, not signalling BIP125 replacement.
	seqNoRBF = wire.MaxTxInSequenceNum - 1
	// seqRBF signals BIP125 replacement.
	seqRBF = wire.MaxTxInSequenceNum - 2
)

// ErrNoFunds is returned when the wallet has no spendable outputs for a
// send. Fund mines the coins a test needs.
var ErrNoFunds = errors.New("regtest: not enough spendable outputs (call Wallet.Fund)")

var errReorg = errors.New("chain changed under the scan")

// Wallet is a single P2WPKH key that the node's generate pays (btcd has no
// wallet). It keeps its own view of its outputs by scanning every block of
// the chain (coinbases and any transaction paying its script, whoever mined
// the block) and by recording the transactions it broadcasts. A reorg or a
// restart makes it rescan the chain and the mempool. Its methods are safe
// for concurrent use; they run one at a time.
type Wallet struct {
	node     *Node
	key      *btcec.PrivateKey
	addr     *btcutil.AddressWitnessPubKeyHash
	pkScript []byte

	mu           sync.Mutex
	scanned      bool // false: the next sync rescans from genesis
	tipHeight    int32
	tipHash      chainhash.Hash
	utxos        map[wire.OutPoint]*utxo          // unspent as far as we know
	mempoolSpent map[wire.OutPoint]chainhash.Hash // our outputs spent by unconfirmed txs
	pending      map[chainhash.Hash]*pendingTx    // unconfirmed txs that pay or spend us
	known        map[wire.OutPoint]utxo           // every output of ours ever seen
	seq          uint64
}

type utxo struct {
	op       wire.OutPoint
	value    int64
	height   int32 // block height; -1 while unconfirmed
	coinbase bool
	seq      uint64 // order of discovery: higher is newer
}

type pendingTx struct {
	tx    *wire.MsgTx
	spent []utxo // the wallet outputs it spends
}

// SendOpts describes a payment made by Send. The zero value sends one output
// of the whole of one confirmed coin (less a DefaultFeeRate fee) back to the
// wallet.
type SendOpts struct {
	// FeeRate in sat/vB; 0 means DefaultFeeRate. The fee is computed for
	// the largest signature size, so the real rate is at least this.
	FeeRate float64
	// Outputs is the number of outputs paying To (0 means 1).
	Outputs int
	// To is the script the outputs pay; nil means the wallet's own.
	To []byte
	// Amount per output. 0 spends exactly one input and splits all of it
	// (less the fee) evenly over the outputs, without change; otherwise
	// inputs are added until they cover Outputs*Amount plus the fee, and
	// change above DustLimit returns to the wallet.
	Amount btcutil.Amount
	// SpendUnconfirmed makes the first input the wallet's newest
	// unconfirmed output, so the transaction is a child of a mempool
	// parent (error if there is none). Otherwise only confirmed, mature
	// outputs are spent.
	SpendUnconfirmed bool
	// Replaceable signals BIP125 replacement (sequence 0xfffffffd);
	// otherwise inputs use 0xfffffffe (no signal).
	Replaceable bool
}

func newWallet() (*Wallet, error) {
	key, err := btcec.NewPrivateKey()
	if err != nil {
		return nil, fmt.Errorf("regtest: wallet key: %w", err)
	}
	pub := key.PubKey().SerializeCompressed()
	addr, err := btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(pub), &chaincfg.RegressionNetParams)
	if err != nil {
		return nil, fmt.Errorf("regtest: wallet address: %w", err)
	}
	script, err := txscript.PayToAddrScript(addr)
	if err != nil {
		return nil, fmt.Errorf("regtest: wallet script: %w", err)
	}
	w := &Wallet{key: key, addr: addr, pkScript: script}
	w.reset()
	return w, nil
}

// Address is the wallet's P2WPKH (bech32, bcrt1q...) address.
func (w *Wallet) Address() btcutil.Address { return w.addr }

// PkScript is the wallet's output script (OP_0 <20-byte key hash>).
func (w *Wallet) PkScript() []byte { return append([]byte(nil), w.pkScript...) }

// PrivKey is the wallet's key, for tests that sign on their own.
func (w *Wallet) PrivKey() *btcec.PrivateKey { return w.key }

// Balance reports the wallet's spendable outputs now (confirmed and mature)
// and their total value.
func (w *Wallet) Balance(ctx context.Context) (n int, total btcutil.Amount, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.sync(ctx); err != nil {
		return 0, 0, err
	}
	for _, u := range w.confirmedCoins(0) {
		n++
		total += btcutil.Amount(u.value)
	}
	return n, total, nil
}

// Fund makes sure the wallet has at least n spendable (confirmed, mature)
// outputs, mining as few blocks as that takes: 99+n on a fresh chain, since
// a coinbase can be spent in the block 100 above it.
func (w *Wallet) Fund(ctx context.Context, n int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fund(ctx, n)
}

func (w *Wallet) fund(ctx context.Context, n int) error {
	if err := w.sync(ctx); err != nil {
		return err
	}
	have := len(w.confirmedCoins(0))
	if have >= n {
		return nil
	}
	need := n - have
	maturity := int32(chaincfg.RegressionNetParams.CoinbaseMaturity)
	var immature []int32
	for _, u := range w.utxos {
		if u.coinbase && u.height >= 0 && !w.mature(u) {
			immature = append(immature, u.height)
		}
	}
	// After mining m blocks the next block is tip+m+1, and a coinbase at
	// height h is spendable there when tip+m+1-h >= maturity.
	m := int32(1)
	for ; ; m++ {
		limit := w.tipHeight + m + 1 - maturity
		matured := 0
		for _, h := range immature {
			if h <= limit {
				matured++
			}
		}
		if fresh := limit - w.tipHeight; fresh > 0 {
			matured += int(fresh)
		}
		if matured >= need {
			break
		}
	}
	if _, err := w.node.Generate(ctx, int(m)); err != nil {
		return err
	}
	if err := w.sync(ctx); err != nil {
		return err
	}
	if got := len(w.confirmedCoins(0)); got < n {
		return fmt.Errorf("regtest: fund: %d spendable outputs after mining %d blocks, want %d", got, m, n)
	}
	return nil
}

// Send builds, signs (BIP143, SIGHASH_ALL) and broadcasts one transaction
// (see SendOpts) and returns it once the node accepted it.
func (w *Wallet) Send(ctx context.Context, opts SendOpts) (*wire.MsgTx, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.sync(ctx); err != nil {
		return nil, err
	}
	tx, spent, err := w.build(opts)
	if err != nil {
		return nil, err
	}
	if err := w.node.rpc.call(ctx, "sendrawtransaction", nil, txHex(tx)); err != nil {
		return nil, fmt.Errorf("regtest: %w", err)
	}
	w.applySent(tx, spent)
	return tx, nil
}

// defaultFeeRates are SendMany's fee rates (sat/vB) when it is given none.
func defaultFeeRates() []float64 { return []float64{1, 2, 3, 5, 8, 13, 21, 34, 55} }

// SendMany broadcasts count independent transactions, each spending one
// confirmed wallet output to one wallet output, the i-th at fee rate
// feeRates[i%len(feeRates)] (1, 2, 3, 5, 8, 13, 21, 34, 55 sat/vB when none
// are given). When the wallet has fewer confirmed coins than count it first
// splits large coins into up to 1000 outputs per transaction and mines one
// block to confirm the splits (mining more blocks first if it lacks large
// coins). That block also confirms whatever else was in the mempool.
//
// It returns the transactions the node accepted; if some were rejected the
// error says which and why.
func (w *Wallet) SendMany(ctx context.Context, count int, feeRates ...float64) ([]*wire.MsgTx, error) {
	if count <= 0 {
		return nil, nil
	}
	if len(feeRates) == 0 {
		feeRates = defaultFeeRates()
	}
	maxRate := 0.0
	for _, r := range feeRates {
		if r <= 0 || math.IsNaN(r) || math.IsInf(r, 0) {
			return nil, fmt.Errorf("regtest: fee rate %v", r)
		}
		maxRate = math.Max(maxRate, r)
	}
	w.mu.Lock()
	defer w.mu.Unlock()

	oneOut := []*wire.TxOut{{PkScript: w.pkScript}}
	minCoin := feeFor(maxRate, vsize(1, oneOut)) + 10*DustLimit
	coins, err := w.ensureCoins(ctx, count, minCoin)
	if err != nil {
		return nil, err
	}
	sort.Slice(coins, func(i, j int) bool { return coins[i].value < coins[j].value })
	coins = coins[:count]

	txs := make([]*wire.MsgTx, count)
	spent := make([][]*utxo, count)
	for i, c := range coins {
		rate := feeRates[i%len(feeRates)]
		out := &wire.TxOut{Value: c.value - feeFor(rate, vsize(1, oneOut)), PkScript: w.pkScript}
		tx := w.newTx([]*utxo{c}, []*wire.TxOut{out}, seqNoRBF)
		if err := w.sign(tx, []*utxo{c}); err != nil {
			return nil, err
		}
		txs[i], spent[i] = tx, []*utxo{c}
	}
	return w.broadcastMany(ctx, txs, spent)
}

// ensureCoins returns at least count confirmed spendable coins worth at
// least minValue each, splitting (and mining) as needed.
func (w *Wallet) ensureCoins(ctx context.Context, count int, minValue int64) ([]*utxo, error) {
	for round := 0; ; round++ {
		if err := w.sync(ctx); err != nil {
			return nil, err
		}
		coins := w.confirmedCoins(minValue)
		if len(coins) >= count {
			return coins, nil
		}
		if round == 3 {
			return nil, fmt.Errorf("regtest: %d coins of at least %d sat after splitting, want %d", len(coins), minValue, count)
		}
		need := count - len(coins)

		// Plan splits of the largest coins: a coin split in k gains k-1.
		sort.Slice(coins, func(i, j int) bool { return coins[i].value > coins[j].value })
		type split struct {
			c *utxo
			k int
		}
		var plan []split
		gain := 0
		for _, c := range coins {
			if gain >= need {
				break
			}
			k := min(splitOutputs, need-gain+1)
			for k >= 2 {
				outs := make([]*wire.TxOut, k)
				for i := range outs {
					outs[i] = &wire.TxOut{PkScript: w.pkScript}
				}
				if (c.value-feeFor(DefaultFeeRate, vsize(1, outs)))/int64(k) >= minValue {
					break
				}
				k /= 2
			}
			if k < 2 {
				break // sorted: smaller coins cannot split either
			}
			plan = append(plan, split{c, k})
			gain += k - 1
		}
		if gain < need {
			// Mine enough coinbases (50 BTC early on) to split.
			more := (need-gain+splitOutputs-2)/(splitOutputs-1) + len(w.confirmedCoins(0))
			if err := w.fund(ctx, more); err != nil {
				return nil, err
			}
			continue
		}
		txs := make([]*wire.MsgTx, len(plan))
		spent := make([][]*utxo, len(plan))
		for i, s := range plan {
			outs := make([]*wire.TxOut, s.k)
			for j := range outs {
				outs[j] = &wire.TxOut{PkScript: w.pkScript}
			}
			per := (s.c.value - feeFor(DefaultFeeRate, vsize(1, outs))) / int64(s.k)
			for j := range outs {
				outs[j].Value = per
			}
			tx := w.newTx([]*utxo{s.c}, outs, seqNoRBF)
			if err := w.sign(tx, []*utxo{s.c}); err != nil {
				return nil, err
			}
			txs[i], spent[i] = tx, []*utxo{s.c}
		}
		if _, err := w.broadcastMany(ctx, txs, spent); err != nil {
			return nil, fmt.Errorf("regtest: splitting coins: %w", err)
		}
		// Confirm the splits so the coins are independent of the mempool.
		for i := 0; i < 3; i++ {
			if _, err := w.node.Generate(ctx, 1); err != nil {
				return nil, err
			}
			if err := w.sync(ctx); err != nil {
				return nil, err
			}
			confirmed := true
			for _, tx := range txs {
				if _, ok := w.pending[tx.TxHash()]; ok {
					confirmed = false
				}
			}
			if confirmed {
				break
			}
		}
	}
}

// broadcastMany sends txs in JSON-RPC batches and records the accepted
// ones. spent[i] are the wallet outputs txs[i] spends.
func (w *Wallet) broadcastMany(ctx context.Context, txs []*wire.MsgTx, spent [][]*utxo) ([]*wire.MsgTx, error) {
	accepted := make([]*wire.MsgTx, 0, len(txs))
	var errs []error
	for from := 0; from < len(txs); from += broadcastBatch {
		to := min(from+broadcastBatch, len(txs))
		calls := make([]batchCall, 0, to-from)
		for _, tx := range txs[from:to] {
			calls = append(calls, batchCall{Method: "sendrawtransaction", Params: []any{txHex(tx)}})
		}
		resps, err := w.node.rpc.batch(ctx, calls)
		if err != nil {
			return accepted, fmt.Errorf("regtest: %w", err)
		}
		for i, r := range resps {
			tx := txs[from+i]
			if r.Error != nil {
				if len(errs) < 5 {
					errs = append(errs, fmt.Errorf("tx %d (%s): %w", from+i, tx.TxHash(), r.Error))
				}
				continue
			}
			w.applySent(tx, spent[from+i])
			accepted = append(accepted, tx)
		}
	}
	if len(accepted) < len(txs) {
		return accepted, fmt.Errorf("regtest: node rejected %d of %d transactions: %w", len(txs)-len(accepted), len(txs), errors.Join(errs...))
	}
	return accepted, nil
}

// DoubleSpend returns a signed transaction that spends the wallet inputs of
// tx to one wallet output and pays a fee higher than tx's by 1 sat/vB of
// its own size (so it would also satisfy BIP125's fee rules). It is not
// broadcast. The node rejects it while tx is in its mempool unless tx
// signalled replacement, and rejects it as spending missing or spent inputs
// once tx is confirmed; a block may still carry it instead of tx.
func (w *Wallet) DoubleSpend(ctx context.Context, tx *wire.MsgTx) (*wire.MsgTx, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ins []*utxo
	var inSum int64
	all := true
	for _, in := range tx.TxIn {
		u, ok := w.known[in.PreviousOutPoint]
		if !ok {
			all = false
			continue
		}
		ins = append(ins, &u)
		inSum += u.value
	}
	if len(ins) == 0 {
		return nil, fmt.Errorf("regtest: double spend: %s spends no wallet output", tx.TxHash())
	}
	var origFee int64
	if all {
		origFee = inSum
		for _, o := range tx.TxOut {
			origFee -= o.Value
		}
	}
	out := &wire.TxOut{PkScript: w.pkScript}
	size := vsize(len(ins), []*wire.TxOut{out})
	fee := max(origFee+size, feeFor(DefaultFeeRate, size))
	out.Value = inSum - fee
	if out.Value < DustLimit {
		return nil, fmt.Errorf("regtest: double spend: inputs of %d sat cannot pay a fee of %d", inSum, fee)
	}
	ds := w.newTx(ins, []*wire.TxOut{out}, seqNoRBF)
	if err := w.sign(ds, ins); err != nil {
		return nil, err
	}
	return ds, nil
}

// build makes and signs the transaction Send broadcasts. It does not change
// the wallet's state.
func (w *Wallet) build(opts SendOpts) (*wire.MsgTx, []*utxo, error) {
	rate := opts.FeeRate
	if rate == 0 {
		rate = DefaultFeeRate
	}
	if rate < 0 || math.IsNaN(rate) || math.IsInf(rate, 0) {
		return nil, nil, fmt.Errorf("regtest: fee rate %v", opts.FeeRate)
	}
	nOut := opts.Outputs
	if nOut <= 0 {
		nOut = 1
	}
	to := opts.To
	if to == nil {
		to = w.pkScript
	}
	if opts.Amount < 0 {
		return nil, nil, fmt.Errorf("regtest: amount %v", opts.Amount)
	}
	seq := uint32(seqNoRBF)
	if opts.Replaceable {
		seq = seqRBF
	}
	outs := make([]*wire.TxOut, nOut)
	for i := range outs {
		outs[i] = &wire.TxOut{PkScript: to}
	}

	// Candidate inputs, in the order they are taken.
	var cands []*utxo
	if opts.SpendUnconfirmed {
		var newest *utxo
		for _, u := range w.utxos {
			if u.height < 0 && (newest == nil || u.seq > newest.seq) {
				newest = u
			}
		}
		if newest == nil {
			return nil, nil, fmt.Errorf("regtest: SpendUnconfirmed: the wallet has no unconfirmed output")
		}
		cands = append(cands, newest)
	}
	confirmed := w.confirmedCoins(0)
	sort.Slice(confirmed, func(i, j int) bool { return confirmed[i].value > confirmed[j].value })
	cands = append(cands, confirmed...)
	if len(cands) == 0 {
		return nil, nil, ErrNoFunds
	}

	var ins []*utxo
	if opts.Amount == 0 {
		ins = cands[:1]
		per := (ins[0].value - feeFor(rate, vsize(1, outs))) / int64(nOut)
		if per < DustLimit {
			return nil, nil, fmt.Errorf("%w: an output of %d sat cannot pay %d outputs at %v sat/vB", ErrNoFunds, ins[0].value, nOut, rate)
		}
		for _, o := range outs {
			o.Value = per
		}
	} else {
		for _, o := range outs {
			o.Value = int64(opts.Amount)
		}
		target := int64(opts.Amount) * int64(nOut)
		change := &wire.TxOut{PkScript: w.pkScript}
		withChange := append(append([]*wire.TxOut(nil), outs...), change)
		var sum int64
		done := false
		for _, u := range cands {
			ins = append(ins, u)
			sum += u.value
			if c := sum - target - feeFor(rate, vsize(len(ins), withChange)); c >= DustLimit {
				change.Value = c
				outs = withChange
				done = true
				break
			}
			if sum >= target+feeFor(rate, vsize(len(ins), outs)) {
				done = true // the remainder is too small for change: it is fee
				break
			}
		}
		if !done {
			return nil, nil, fmt.Errorf("%w: %d sat available, %d sat wanted plus fee", ErrNoFunds, sum, target)
		}
	}
	tx := w.newTx(ins, outs, seq)
	if err := w.sign(tx, ins); err != nil {
		return nil, nil, err
	}
	return tx, ins, nil
}

func (w *Wallet) newTx(ins []*utxo, outs []*wire.TxOut, seq uint32) *wire.MsgTx {
	tx := wire.NewMsgTx(2)
	for _, u := range ins {
		in := wire.NewTxIn(&u.op, nil, nil)
		in.Sequence = seq
		tx.AddTxIn(in)
	}
	for _, o := range outs {
		tx.AddTxOut(o)
	}
	return tx
}

// sign adds BIP143 P2WPKH witnesses to every input; ins are the outputs
// the inputs spend, in order.
func (w *Wallet) sign(tx *wire.MsgTx, ins []*utxo) error {
	fetcher := txscript.NewMultiPrevOutFetcher(nil)
	for _, u := range ins {
		fetcher.AddPrevOut(u.op, &wire.TxOut{Value: u.value, PkScript: w.pkScript})
	}
	hashes := txscript.NewTxSigHashes(tx, fetcher)
	for i, u := range ins {
		wit, err := txscript.WitnessSignature(tx, hashes, i, u.value, w.pkScript, txscript.SigHashAll, w.key, true)
		if err != nil {
			return fmt.Errorf("regtest: signing input %d: %w", i, err)
		}
		tx.TxIn[i].Witness = wit
	}
	return nil
}

// ---- the wallet's view of the chain ----

func (w *Wallet) reset() {
	w.scanned = false
	w.tipHeight = 0
	w.tipHash = *chaincfg.RegressionNetParams.GenesisHash
	w.utxos = make(map[wire.OutPoint]*utxo)
	w.mempoolSpent = make(map[wire.OutPoint]chainhash.Hash)
	w.pending = make(map[chainhash.Hash]*pendingTx)
	if w.known == nil {
		w.known = make(map[wire.OutPoint]utxo)
	}
}

// invalidate makes the next operation rescan (after a restart, which
// empties btcd's mempool).
func (w *Wallet) invalidate() {
	w.mu.Lock()
	w.scanned = false
	w.mu.Unlock()
}

// mature reports whether a confirmed output can be spent in the next block.
func (w *Wallet) mature(u *utxo) bool {
	if u.height < 0 {
		return false
	}
	if !u.coinbase {
		return true
	}
	return w.tipHeight+1-u.height >= int32(chaincfg.RegressionNetParams.CoinbaseMaturity)
}

// confirmedCoins lists the spendable confirmed outputs worth minValue or
// more, oldest first. Outputs below 2*DustLimit (late regtest coinbases,
// after the subsidy has halved away) do not count.
func (w *Wallet) confirmedCoins(minValue int64) []*utxo {
	minValue = max(minValue, 2*DustLimit)
	var out []*utxo
	for _, u := range w.utxos {
		if w.mature(u) && u.value >= minValue {
			out = append(out, u)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

// sync brings the wallet's view up to the node's tip.
func (w *Wallet) sync(ctx context.Context) error {
	var best struct {
		Hash   string `json:"hash"`
		Height int32  `json:"height"`
	}
	if err := w.node.rpc.call(ctx, "getbestblock", &best); err != nil {
		return fmt.Errorf("regtest: %w", err)
	}
	if w.scanned && best.Hash == w.tipHash.String() {
		return nil
	}
	if w.scanned && best.Height >= w.tipHeight {
		var h string
		if err := w.node.rpc.call(ctx, "getblockhash", &h, w.tipHeight); err != nil {
			return fmt.Errorf("regtest: %w", err)
		}
		if h == w.tipHash.String() {
			err := w.scanBlocks(ctx, w.tipHeight+1, best.Height)
			if err == nil {
				return w.reconcilePending(ctx)
			}
			if !errors.Is(err, errReorg) {
				return err
			}
		}
	}
	return w.rescan(ctx)
}

// rescan rebuilds the view from the whole chain and the mempool.
func (w *Wallet) rescan(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		w.reset()
		var height int32
		if err := w.node.rpc.call(ctx, "getblockcount", &height); err != nil {
			return fmt.Errorf("regtest: %w", err)
		}
		err := w.scanBlocks(ctx, 1, height)
		if err == nil {
			break
		}
		if !errors.Is(err, errReorg) || attempt == 3 {
			return err
		}
	}
	if err := w.scanMempool(ctx); err != nil {
		return err
	}
	w.scanned = true
	return nil
}

// scanBlocks applies blocks from..to of the node's main chain, checking
// that each extends the wallet's tip (errReorg if not).
func (w *Wallet) scanBlocks(ctx context.Context, from, to int32) error {
	for h := from; h <= to; h += blockBatch {
		end := min(h+blockBatch-1, to)
		calls := make([]batchCall, 0, end-h+1)
		for i := h; i <= end; i++ {
			calls = append(calls, batchCall{Method: "getblockhash", Params: []any{i}})
		}
		resps, err := w.node.rpc.batch(ctx, calls)
		if err != nil {
			return fmt.Errorf("regtest: %w", err)
		}
		calls = calls[:0]
		for _, r := range resps {
			if r.Error != nil {
				return fmt.Errorf("regtest: getblockhash: %w (%w)", r.Error, errReorg)
			}
			var hash string
			if err := jsonString(r.Result, &hash); err != nil {
				return err
			}
			calls = append(calls, batchCall{Method: "getblock", Params: []any{hash, 0}})
		}
		if resps, err = w.node.rpc.batch(ctx, calls); err != nil {
			return fmt.Errorf("regtest: %w", err)
		}
		for i, r := range resps {
			if r.Error != nil {
				return fmt.Errorf("regtest: getblock: %w (%w)", r.Error, errReorg)
			}
			var s string
			if err := jsonString(r.Result, &s); err != nil {
				return err
			}
			raw, err := hex.DecodeString(s)
			if err != nil {
				return fmt.Errorf("regtest: getblock: %w", err)
			}
			var b wire.MsgBlock
			if err := b.Deserialize(bytes.NewReader(raw)); err != nil {
				return fmt.Errorf("regtest: getblock: %w", err)
			}
			if b.Header.PrevBlock != w.tipHash {
				return errReorg
			}
			w.applyBlock(&b, h+int32(i))
		}
	}
	return nil
}

func (w *Wallet) applyBlock(b *wire.MsgBlock, height int32) {
	for i, tx := range b.Transactions {
		txid := tx.TxHash()
		if i > 0 {
			for _, in := range tx.TxIn {
				delete(w.utxos, in.PreviousOutPoint)
				delete(w.mempoolSpent, in.PreviousOutPoint)
			}
		}
		w.addOutputs(tx, txid, height, i == 0)
		delete(w.pending, txid)
	}
	w.tipHash = b.BlockHash()
	w.tipHeight = height
}

// addOutputs records tx's outputs that pay the wallet, at height (-1 for
// unconfirmed). An output already known unconfirmed just gets its height.
func (w *Wallet) addOutputs(tx *wire.MsgTx, txid chainhash.Hash, height int32, coinbase bool) bool {
	ours := false
	for vout, out := range tx.TxOut {
		if !bytes.Equal(out.PkScript, w.pkScript) {
			continue
		}
		ours = true
		op := wire.OutPoint{Hash: txid, Index: uint32(vout)}
		if u, ok := w.utxos[op]; ok {
			u.height = height
			w.known[op] = *u
			continue
		}
		w.seq++
		u := utxo{op: op, value: out.Value, height: height, coinbase: coinbase, seq: w.seq}
		w.known[op] = u
		if _, spent := w.mempoolSpent[op]; spent {
			continue
		}
		w.utxos[op] = &u
	}
	return ours
}

// applySent records a transaction the node accepted.
func (w *Wallet) applySent(tx *wire.MsgTx, spent []*utxo) {
	txid := tx.TxHash()
	p := &pendingTx{tx: tx}
	for _, u := range spent {
		p.spent = append(p.spent, *u)
		delete(w.utxos, u.op)
		w.mempoolSpent[u.op] = txid
	}
	w.addOutputs(tx, txid, -1, false)
	w.pending[txid] = p
}

// scanMempool adds the unconfirmed transactions that pay or spend the
// wallet (after a rescan).
func (w *Wallet) scanMempool(ctx context.Context) error {
	var ids []string
	if err := w.node.rpc.call(ctx, "getrawmempool", &ids); err != nil {
		return fmt.Errorf("regtest: %w", err)
	}
	var txs []*wire.MsgTx
	for from := 0; from < len(ids); from += broadcastBatch {
		to := min(from+broadcastBatch, len(ids))
		calls := make([]batchCall, 0, to-from)
		for _, id := range ids[from:to] {
			calls = append(calls, batchCall{Method: "getrawtransaction", Params: []any{id, 0}})
		}
		resps, err := w.node.rpc.batch(ctx, calls)
		if err != nil {
			return fmt.Errorf("regtest: %w", err)
		}
		for _, r := range resps {
			if r.Error != nil {
				continue // mined or evicted meanwhile; the next sync sees it
			}
			var s string
			if err := jsonString(r.Result, &s); err != nil {
				return err
			}
			tx, err := decodeTx(s)
			if err != nil {
				return err
			}
			txs = append(txs, tx)
		}
	}
	// Outputs first, then spends: the result does not depend on order.
	ours := make(map[chainhash.Hash]*pendingTx)
	for _, tx := range txs {
		txid := tx.TxHash()
		if w.addOutputs(tx, txid, -1, false) {
			ours[txid] = &pendingTx{tx: tx}
		}
	}
	for _, tx := range txs {
		txid := tx.TxHash()
		for _, in := range tx.TxIn {
			u, ok := w.utxos[in.PreviousOutPoint]
			if !ok {
				continue
			}
			p := ours[txid]
			if p == nil {
				p = &pendingTx{tx: tx}
				ours[txid] = p
			}
			p.spent = append(p.spent, *u)
			delete(w.utxos, u.op)
			w.mempoolSpent[u.op] = txid
		}
	}
	for id, p := range ours {
		w.pending[id] = p
	}
	return nil
}

// reconcilePending forgets unconfirmed transactions the node no longer has
// (conflicted by a block, evicted) and gives back the inputs they spent
// when those are still unspent.
func (w *Wallet) reconcilePending(ctx context.Context) error {
	if len(w.pending) == 0 {
		return nil
	}
	var ids []string
	if err := w.node.rpc.call(ctx, "getrawmempool", &ids); err != nil {
		return fmt.Errorf("regtest: %w", err)
	}
	inPool := make(map[string]bool, len(ids))
	for _, id := range ids {
		inPool[id] = true
	}
	dropped := make(map[chainhash.Hash]*pendingTx)
	for id, p := range w.pending {
		if !inPool[id.String()] {
			dropped[id] = p
		}
	}
	if len(dropped) == 0 {
		return nil
	}
	for id, p := range dropped {
		delete(w.pending, id)
		for vout := range p.tx.TxOut {
			op := wire.OutPoint{Hash: id, Index: uint32(vout)}
			delete(w.utxos, op)
			delete(w.mempoolSpent, op)
		}
	}
	for id, p := range dropped {
		for _, u := range p.spent {
			if w.mempoolSpent[u.op] == id {
				delete(w.mempoolSpent, u.op)
			}
			if _, gone := dropped[u.op.Hash]; gone {
				continue
			}
			var out *struct {
				Confirmations int32 `json:"confirmations"`
			}
			if err := w.node.rpc.call(ctx, "gettxout", &out, u.op.Hash.String(), u.op.Index, true); err != nil {
				return fmt.Errorf("regtest: %w", err)
			}
			if out == nil {
				continue
			}
			var sp []struct {
				SpendingTxid string `json:"spendingtxid"`
			}
			q := []map[string]any{{"txid": u.op.Hash.String(), "vout": u.op.Index}}
			if err := w.node.rpc.call(ctx, "gettxspendingprevout", &sp, q); err != nil {
				return fmt.Errorf("regtest: %w", err)
			}
			if len(sp) == 1 && sp[0].SpendingTxid != "" {
				continue
			}
			r := u
			r.height = -1
			if out.Confirmations > 0 {
				r.height = w.tipHeight - out.Confirmations + 1
			}
			w.utxos[r.op] = &r
		}
	}
	return nil
}

// ---- sizes, fees, encoding ----

// vsize is the virtual size of a transaction with nIn P2WPKH inputs and
// outs, counting 72-byte signatures (the largest low-S DER signature plus
// sighash byte), so real transactions are this size or a little smaller.
func vsize(nIn int, outs []*wire.TxOut) int64 {
	base := 4 + 4 + wire.VarIntSerializeSize(uint64(nIn)) + wire.VarIntSerializeSize(uint64(len(outs)))
	base += nIn * (36 + 1 + 4) // outpoint, empty scriptSig, sequence
	for _, o := range outs {
		base += 8 + wire.VarIntSerializeSize(uint64(len(o.PkScript))) + len(o.PkScript)
	}
	witness := 2 + nIn*(1+1+72+1+33) // marker+flag; per input: count, sig, pubkey
	weight := base*4 + witness
	return int64((weight + 3) / 4)
}

func feeFor(rate float64, vsize int64) int64 { return int64(math.Ceil(rate * float64(vsize))) }

func txHex(tx *wire.MsgTx) string {
	var buf bytes.Buffer
	buf.Grow(tx.SerializeSize())
	_ = tx.Serialize(&buf) // writes to a bytes.Buffer do not fail
	return hex.EncodeToString(buf.Bytes())
}

func decodeTx(s string) (*wire.MsgTx, error) {
	raw, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("regtest: tx hex: %w", err)
	}
	tx := new(wire.MsgTx)
	if err := tx.Deserialize(bytes.NewReader(raw)); err != nil {
		return nil, fmt.Errorf("regtest: tx: %w", err)
	}
	return tx, nil
}
