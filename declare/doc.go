// Package declare is the Job Declarator Server (JDS) side of the Job
// Declaration Protocol and the API a pool uses to check custom jobs against
// declared ones.
//
// The validation core (tokens, DeclareMiningJob checks, PushSolution
// rebuild) does no IO; the Server around it runs the Noise listener, the
// per-connection reader and writer, the node calls (getblocktemplate
// proposal, submitblock) and the pool API (PoolAPI in process, or the
// HTTP/JSON handler and client). The JDC side lives in declare/declarer.
package declare
