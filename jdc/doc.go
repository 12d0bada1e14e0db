// Package jdc is the Job Declarator Client's decision core: everything jdc
// decides, as a deterministic state machine with no goroutines, network or
// clock. The shell (package jdc/daemon) feeds it events — templates and tips
// from tp, transaction data, pool and JDS connections coming and going,
// tokens and declaration answers, pool messages, device shares, timer ticks
// carrying the time — and carries out the Actions each returns: work and tips
// for the device server, messages for the pools, token and declaration
// requests for the JDSes, found blocks to write and submit, connections to
// reset, switches and share outcomes to count, lines to log.
//
// # Templates and work
//
// Every template from tp becomes, for the source the devices mine for (a
// pool+JDS pair or solo), a coinbase split around an extranonce area that
// starts with the pool channel's extranonce prefix (DIGEST §6.3–6.4). Future
// templates are sent to the devices ahead, so a new tip is one SetPrevHash.
//
// # The job pipeline of a pair
//
// For the current template the active pair takes a token (one spare is kept
// ahead), declares the job to its JDS in full-template mode, and sends
// SetCustomMiningJob to its pool; standby pairs do the same on every new tip
// and at most once per Config.ProbeInterval for updates on the same tip. Devices mine before the pool answers
// (optimistic mining); their shares wait, bounded, for the pool's job id.
//
// # Failover
//
// Pairs are tried in configuration order. Any trigger the spec names (a slow
// or lost JDS, DeclareMiningJob.Error, SetCustomMiningJob.Error or no answer,
// shares of acknowledged jobs rejected, a lost connection) fails the pair and,
// when it fed the devices, moves them at once to the next usable pair, or to
// solo. A failed pair keeps being probed (as a standby) and is used again
// once its custom jobs were acknowledged for Config.ReturnAfter. At start,
// Config.StartGrace lets a higher pair connect before a lower one is taken.
package jdc
