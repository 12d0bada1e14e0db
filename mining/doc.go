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
//
// # Device server (jdc downstream)
//
//	alloc, _ := mining.NewExtranonceAllocator(poolPrefix, poolSize, 8, 0) // one per jdc
//	s := mining.NewSession(mining.Config{StandardJobs: requiresStandardJobs}, alloc) // per connection
//	ch, out := s.OpenStandard(req, now)            // Success or Error, then current work
//	jt, _ := mining.NewJobTemplate(newTemplate, mining.CoinbaseConfig{
//		Outputs: payouts, Tag: []byte("/sv2kit/"), ExtranonceSize: alloc.FullSize()})
//	out, _ = s.NewTemplate(jt)                     // future or active jobs for every channel
//	out, _ = s.NewPrevHash(snph.TemplateID, mining.TipFromTDP(snph, now))
//	r := s.SubmitExtended(share, now)              // Accepted, BlockFound or Rejected+Code
//	if r.Status == mining.BlockFound { r.Job.SubmitSolution(&r.Header, share.Extranonce) … }
//	if mining.MeetsTarget(&r.Hash, &upstreamTarget) { r.Upstream(share.Extranonce, …) }
//	out = s.Tick(now)                              // vardiff SetTargets, every few seconds
//
// The JobTemplate also gives the upstream side its custom job
// (JobTemplate.SetCustomMiningJob) and the declared coinbase
// (JobTemplate.CoinbaseParts(true) for DeclareMiningJob).
//
// # Pool (custom jobs)
//
// The pool opens extended channels the same way, rebuilds each
// SetCustomMiningJob with JobTemplateFromCustomJob and records it with
// Channel.AddCustomJob (active at once; a new prev hash makes older jobs
// stale), then validates SubmitSharesExtended with Session.SubmitExtended.
package mining
