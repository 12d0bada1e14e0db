package tpserver

import (
	"context"
	"path/filepath"
	"time"

	"github.com/sv2kit/sv2kit/internal/blockfile"

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
	case node.IsDuplicateBlock(result):
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
	return node.SubmitBlockRetrying(ctx, s.cfg.Node, raw, func(err error, attempt int, wait time.Duration) {
		s.log.Warn("submitblock did not reach the node; retrying", "attempt", attempt, "retry_in", wait, "error", err, "hint", node.Hint(err))
	})
}

// writeBlock stores a found block as hex at <datadir>/blocks/<height>-<hash>.hex,
// synced with its directory, so a crash after submitting cannot lose it.
func (s *Server) writeBlock(b *provider.FoundBlock) (string, error) {
	return blockfile.WriteHex(filepath.Join(s.cfg.DataDir, "blocks"), b.Height, b.HashString(), b.Raw)
}
