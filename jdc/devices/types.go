package devices

import "time"

// Work is what jdc hands the server: a coinbase split around the extranonce
// space devices share, and the rest of the block header's inputs. The server
// subdivides the extranonce space per channel.
type Work struct {
	// ID is jdc's id for this work (e.g. the TDP template id); echoed in
	// Share and used by SetPrevHash.
	ID uint64
	// Future marks a future template: it is sent ahead and activated by
	// SetPrevHash. Otherwise it replaces the current job at once on the
	// current tip.
	Future bool
	// Version is the block version; devices may roll the BIP323 bits.
	Version uint32
	// CoinbasePrefix is the non-witness (BIP141-stripped) coinbase up to the
	// device extranonce space; it already includes the upstream pool's
	// extranonce prefix and ends inside the scriptSig.
	CoinbasePrefix []byte
	// CoinbaseSuffix is the non-witness coinbase after it, starting with the
	// input's nSequence (the extranonce space ends the scriptSig).
	CoinbaseSuffix []byte
	// ExtranonceSpace is the number of bytes between prefix and suffix the
	// server subdivides per channel.
	ExtranonceSpace int
	MerklePath      [][32]byte
}

// PrevHash is a new chain tip: it activates the future work WorkID.
type PrevHash struct {
	WorkID   uint64
	PrevHash [32]byte
	MinNTime uint32
	NBits    uint32
}

// Share is a valid share that meets the upstream target or the network
// target. Everything jdc needs to rebuild the header and the coinbase is
// here: the coinbase is Work.CoinbasePrefix ‖ Extranonce ‖ Work.CoinbaseSuffix.
type Share struct {
	WorkID       uint64
	ChannelID    uint32
	UserIdentity string
	// Extranonce is the whole device extranonce space (ExtranonceSpace
	// bytes): the channel's prefix followed by the device's part.
	Extranonce []byte
	Version    uint32
	NTime      uint32
	Nonce      uint32
	// Hash is the header hash in internal byte order.
	Hash [32]byte
	// Block: the hash meets the network target.
	Block bool
	// PrevHash and NBits of the tip the share was mined on.
	PrevHash [32]byte
	NBits    uint32
}

// Stats is a snapshot of the server.
type Stats struct {
	Connections    int
	Channels       int
	SharesAccepted uint64
	SharesRejected uint64
	SharesUpstream uint64
	Blocks         uint64
	// HashRate is the sum of the channels' estimates (hashes per second).
	HashRate    float64
	PerChannel  []ChannelStats
	CollectedAt time.Time
}

// ChannelStats describes one open channel.
type ChannelStats struct {
	Conn         uint64
	ChannelID    uint32
	UserIdentity string
	Extended     bool
	// Difficulty is the channel's current share difficulty.
	Difficulty float64
	// HashRate is estimated from accepted shares (hashes per second); before
	// enough shares it is the vardiff estimate.
	HashRate float64
	Accepted uint64
	Rejected uint64
}
