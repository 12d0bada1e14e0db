package node

import (
	"context"
	"strings"
	"time"
)

// BlockSubmitter is what SubmitBlockRetrying needs: *Client, or a role's
// narrower node interface.
type BlockSubmitter interface {
	SubmitBlock(ctx context.Context, rawBlock []byte) (string, error)
}

// SubmitBlockRetrying calls submitblock until the node answers. While the
// node cannot be reached (down, restarting, busy, warming up, cookie being
// rewritten) it retries with backoff until ctx ends, calling onRetry (if not
// nil) before each wait; the node's answer, accepted ("") or a reason, is
// final. Every role that finds blocks submits through it, so a block is
// never dropped because the node blinked.
func SubmitBlockRetrying(ctx context.Context, c BlockSubmitter, rawBlock []byte, onRetry func(err error, attempt int, wait time.Duration)) (string, error) {
	var result string
	bo := Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second}
	err := Retry(ctx, &bo, func(ctx context.Context) error {
		r, err := c.SubmitBlock(ctx, rawBlock)
		if err != nil {
			if IsTransport(err) || IsBusy(err) || IsWarmup(err) || IsCookie(err) {
				return err
			}
			return Permanent(err)
		}
		result = r
		return nil
	}, onRetry)
	return result, err
}

// IsDuplicateBlock reports whether a submitblock result says the node
// already has the block: Bitcoin Core answers "duplicate", btcd "rejected:
// already have block …". Several roles submit the same block, so this is
// the normal answer for all but the first.
func IsDuplicateBlock(result string) bool {
	return result == "duplicate" || strings.Contains(result, "already have")
}
