package devices

import (
	"slices"
	"sync/atomic"

	"github.com/sv2kit/sv2kit/mining"
)

// serverStats are the counters behind Stats.
type serverStats struct {
	accepted, rejected, upstream, blocks atomic.Uint64
}

// Stats returns a snapshot: connections, channels with their difficulty and
// estimated hash rate, and share counters.
func (s *Server) Stats() Stats {
	st := Stats{
		SharesAccepted: s.stats.accepted.Load(),
		SharesRejected: s.stats.rejected.Load(),
		SharesUpstream: s.stats.upstream.Load(),
		Blocks:         s.stats.blocks.Load(),
		CollectedAt:    s.cfg.now(),
	}
	for _, c := range s.connections() {
		c.mu.Lock()
		if c.cs.sess != nil {
			st.Connections++
			for _, ch := range c.cs.sess.Channels() {
				ci := c.cs.info[ch.ID()]
				cs := ch.Stats()
				rate := ch.HashRate()
				if ci != nil && ci.rate > 0 {
					rate = ci.rate
				}
				st.PerChannel = append(st.PerChannel, ChannelStats{
					Conn:         c.id,
					ChannelID:    ch.ID(),
					UserIdentity: ch.UserIdentity(),
					Extended:     ch.Kind() == mining.Extended,
					Difficulty:   mining.DifficultyFromTarget(ch.Target()),
					HashRate:     rate,
					Accepted:     cs.Accepted,
					Rejected:     cs.Rejected,
				})
				st.HashRate += rate
			}
		}
		c.mu.Unlock()
	}
	st.Channels = len(st.PerChannel)
	slices.SortFunc(st.PerChannel, func(a, b ChannelStats) int {
		if a.Conn != b.Conn {
			return cmpU64(a.Conn, b.Conn)
		}
		return cmpU64(uint64(a.ChannelID), uint64(b.ChannelID))
	})
	return st
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
