package tpserver

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sv2kit/sv2kit/node"
	"github.com/sv2kit/sv2kit/provider"
)

// Submit results, the label values of tp_blocks_submitted_total.
const (
	resultAccepted  = "accepted"
	resultDuplicate = "duplicate"
	resultRejected  = "rejected"
	resultError     = "error"
	resultNoNode    = "no-node"
)

// blockLoop writes each found block to disk, then submits it.
func (s *Server) blockLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			// Blocks still queued: at least on disk.
			for {
				select {
				case b := <-s.blocks:
					if _, err := s.writeBlock(&b); err != nil {
						s.log.Error("cannot write found block", "hash", b.HashString(), "error", err)
					}
				default:
					return
				}
			}
		case b := <-s.blocks:
			s.handleBlock(ctx, &b)
		}
	}
}

func (s *Server) handleBlock(ctx context.Context, b *provider.FoundBlock) {
	path, err := s.writeBlock(b)
	if err != nil {
		// Submitting matters more than the copy: go on.
		s.log.Error("cannot write found block to disk; submitting it anyway", "hash", b.HashString(), "error", err)
	} else {
		s.log.Info("found block written", "hash", b.HashString(), "height", b.Height, "file", path)
	}
	if s.cfg.Node == nil {
		s.m.blocksSubmitted.WithLabelValues(resultNoNode).Inc()
		return
	}
	result, err := s.submit(ctx, b.Raw)
	label := resultAccepted
	switch {
	case err != nil:
		label = resultError
		s.log.Error("submitblock failed; the block is on disk, submit it by hand (bitcoin-cli submitblock)",
			"hash", b.HashString(), "file", path, "error", err, "hint", node.Hint(err))
	case result == "":
		s.log.Info("block accepted by the node", "hash", b.HashString(), "height", b.Height, "stale_template", b.Stale)
	case result == "duplicate" || strings.Contains(result, "already have"):
		label = resultDuplicate
		s.log.Info("node already has the block", "hash", b.HashString(), "result", result)
	default:
		label = resultRejected
		s.log.Error("node rejected the block", "hash", b.HashString(), "height", b.Height, "result", result, "stale_template", b.Stale)
	}
	s.m.blocksSubmitted.WithLabelValues(label).Inc()
}

// submit calls submitblock, retrying while the node cannot be reached.
func (s *Server) submit(ctx context.Context, raw []byte) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SubmitTimeout)
	defer cancel()
	var result string
	bo := node.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second}
	err := node.Retry(ctx, &bo, func(ctx context.Context) error {
		r, err := s.cfg.Node.SubmitBlock(ctx, raw)
		if err != nil {
			if node.IsTransport(err) || node.IsBusy(err) || node.IsCookie(err) || node.IsWarmup(err) {
				return err
			}
			return node.Permanent(err)
		}
		result = r
		return nil
	}, func(err error, attempt int, wait time.Duration) {
		s.log.Warn("submitblock did not reach the node; retrying", "attempt", attempt, "retry_in", wait, "error", err, "hint", node.Hint(err))
	})
	return result, err
}

// writeBlock stores a found block as hex at <datadir>/blocks/<height>-<hash>.hex
// and fsyncs file and directory, so a crash after submitting cannot lose it.
func (s *Server) writeBlock(b *provider.FoundBlock) (string, error) {
	dir := filepath.Join(s.cfg.DataDir, "blocks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	path := filepath.Join(dir, fmt.Sprintf("%d-%s.hex", b.Height, b.HashString()))
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", tmp, err)
	}
	data := make([]byte, hex.EncodedLen(len(b.Raw))+1)
	hex.Encode(data, b.Raw)
	data[len(data)-1] = '\n'
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return "", fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("rename %s: %w", tmp, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return path, nil
}
