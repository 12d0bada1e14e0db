// Package mining is the Mining Protocol domain core shared by jdc (downstream
// device server and upstream pool connection) and the test pool: targets and
// difficulty, extranonce subdivision, jobs built from templates or custom
// jobs, standard/extended/group channels, share validation, vardiff and block
// assembly for a found block (DIGEST §6).
//
// It is a pure core: no network, no goroutines, no clock. Time is passed in.
// A Session (the channels of one connection) is not safe for concurrent use;
// an ExtranonceAllocator is, because one allocator serves every connection.
//
// Byte orders follow the messages: hashes (prev hash, merkle nodes, txids,
// share hashes) are in Bitcoin's internal order, targets are little-endian
// 256-bit integers ([32]byte, byte 31 most significant).
package mining
