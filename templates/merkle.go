package templates

import "crypto/sha256"

// Hashes here are 32-byte values in Bitcoin's internal byte order (the order
// inside a serialized block), which is also how SV2 carries them as U256.

// DoubleSHA256 is SHA256(SHA256(b)).
func DoubleSHA256(b []byte) [32]byte {
	h := sha256.Sum256(b)
	return sha256.Sum256(h[:])
}

// hashPair is the merkle node hash of two children.
func hashPair(a, b *[32]byte) [32]byte {
	var buf [64]byte
	copy(buf[:32], a[:])
	copy(buf[32:], b[:])
	return DoubleSHA256(buf[:])
}

// MerklePath returns the siblings, leaf level first, on the path of the
// coinbase (index 0) of a block whose other transactions have the given txids
// in block order. The coinbase hash itself is not needed: siblings of index 0
// never depend on it. Empty when the block holds only the coinbase.
func MerklePath(txids [][32]byte) [][32]byte {
	if len(txids) == 0 {
		return nil
	}
	// level holds the hashes of one tree level with the coinbase-side entry
	// (index 0) left out: level[i] is the node at index i+1.
	level := make([][32]byte, len(txids))
	copy(level, txids)
	var path [][32]byte
	for {
		path = append(path, level[0])
		// Full level length including the index-0 node.
		n := len(level) + 1
		if n <= 2 {
			return path
		}
		// Parents of indices 2,3 / 4,5 / ...; index 0,1 is the path node.
		// An odd level duplicates its last node (Bitcoin's rule).
		next := make([][32]byte, 0, (n+1)/2-1)
		for i := 2; i < n; i += 2 {
			left := &level[i-1]
			right := left
			if i+1 < n {
				right = &level[i]
			}
			next = append(next, hashPair(left, right))
		}
		level = next
	}
}

// MerkleRoot folds a merkle path onto the coinbase txid: the root committed in
// the block header, with the coinbase always the left child.
func MerkleRoot(coinbaseTxid [32]byte, path [][32]byte) [32]byte {
	root := coinbaseTxid
	for i := range path {
		root = hashPair(&root, &path[i])
	}
	return root
}

// MerkleRootOf computes the root over a full list of leaf hashes (coinbase
// first). Used for witness roots and for checking assembled blocks.
func MerkleRootOf(leaves [][32]byte) [32]byte {
	if len(leaves) == 0 {
		return [32]byte{}
	}
	level := make([][32]byte, len(leaves))
	copy(level, leaves)
	for len(level) > 1 {
		next := level[:0]
		for i := 0; i < len(level); i += 2 {
			j := i + 1
			if j == len(level) {
				j = i
			}
			next = append(next, hashPair(&level[i], &level[j]))
		}
		level = next
	}
	return level[0]
}
