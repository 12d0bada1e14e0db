package regtest

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// btcd --regtest deletes its block database at every start (btcd.go,
// removeRegressionDB: "the regression test is special in that it needs a
// clean database for each run"). To restart a node with its chain, the
// harness moves the database aside while btcd is down and, once the new
// process answers, submits every block of the old flat files again with
// submitblock, in the order btcd stored them. btcd validates each block
// again, so the chain that comes back (hashes, height, tip) is the one it
// had; its mempool, which btcd never persists, is empty.

// blockDB is btcd's ffldb directory for regtest under --datadir.
func (n *Node) blockDB() string { return filepath.Join(n.dataDir, "regtest", "blocks_ffldb") }

// setAsideBlocks moves the stopped node's block database out of btcd's
// reach and returns where it went ("" if there was none).
func (n *Node) setAsideBlocks() (string, error) {
	src := n.blockDB()
	if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	dst := filepath.Join(n.dir, "replay")
	if _, err := os.Stat(dst); err == nil {
		// A restart that failed before its replay finished left the
		// chain here; what btcd has now is a fresh database.
		if err := os.RemoveAll(src); err != nil {
			return "", fmt.Errorf("regtest: %w", err)
		}
		return dst, nil
	}
	if err := os.Rename(src, dst); err != nil {
		return "", fmt.Errorf("regtest: setting the block database aside: %w", err)
	}
	return dst, nil
}

// replayBlocks submits the blocks stored in dir's flat files to the running
// node and returns how many it accepted.
func (n *Node) replayBlocks(ctx context.Context, dir string) (int, error) {
	blocks, err := readFlatFiles(dir, wire.TestNet)
	if err != nil {
		return 0, err
	}
	genesis := chaincfg.RegressionNetParams.GenesisHash
	accepted := 0
	var rejected []string
	for from := 0; from < len(blocks); from += blockBatch {
		to := min(from+blockBatch, len(blocks))
		calls := make([]batchCall, 0, to-from)
		for _, raw := range blocks[from:to] {
			if len(raw) >= 80 && chainhash.DoubleHashH(raw[:80]) == *genesis {
				continue // every fresh database starts with it
			}
			calls = append(calls, batchCall{Method: "submitblock", Params: []any{hex.EncodeToString(raw)}})
		}
		resps, err := n.rpc.batch(ctx, calls)
		if err != nil {
			return accepted, fmt.Errorf("regtest: replaying blocks: %w", err)
		}
		for _, r := range resps {
			switch {
			case r.Error != nil:
				rejected = append(rejected, r.Error.Error())
			case string(r.Result) == "null":
				accepted++
			default:
				rejected = append(rejected, string(r.Result))
			}
		}
	}
	if len(rejected) > 0 {
		// A block btcd had stored but found invalid when connecting it is
		// rejected again; that is the same chain, so only report it.
		n.logf("regtest: replay: %d blocks rejected again, first: %s", len(rejected), rejected[0])
	}
	return accepted, nil
}

// readFlatFiles returns the blocks in ffldb's flat files (NNNNNNNNN.fdb)
// in storage order. Each record is network (LE uint32), length (LE
// uint32), the block, and a big-endian CRC-32C of the preceding bytes.
// Reading stops at the first truncated or corrupt record (a crash may leave
// a partial write at the end).
func readFlatFiles(dir string, net wire.BitcoinNet) ([][]byte, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.fdb"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	table := crc32.MakeTable(crc32.Castagnoli)
	var blocks [][]byte
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("regtest: %w", err)
		}
		for off := 0; off+8 <= len(data); {
			if wire.BitcoinNet(binary.LittleEndian.Uint32(data[off:])) != net {
				return blocks, nil
			}
			size := int(binary.LittleEndian.Uint32(data[off+4:]))
			end := off + 8 + size
			if size < 80 || end+4 > len(data) {
				return blocks, nil
			}
			if crc32.Checksum(data[off:end], table) != binary.BigEndian.Uint32(data[end:]) {
				return blocks, nil
			}
			blocks = append(blocks, data[off+8:end])
			off = end + 4
		}
	}
	return blocks, nil
}

// tip is a chain tip as getbestblock reports it.
type tip struct {
	Hash   string `json:"hash"`
	Height int32  `json:"height"`
}

func (t tip) String() string { return fmt.Sprintf("%d %s", t.Height, t.Hash) }

func (n *Node) bestBlock(ctx context.Context) (tip, error) {
	var t tip
	err := n.rpc.call(ctx, "getbestblock", &t)
	return t, err
}

func isAddrInUse(s string) bool { return strings.Contains(s, "address already in use") }
