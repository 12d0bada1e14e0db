package declare

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/sv2/messages"
)

// HTTP paths of the pool API.
const (
	PathValidate = "/v1/custom-jobs/validate"
	PathBlocks   = "/v1/blocks"
)

// MaxHTTPBody bounds a request body of the pool API: a SetCustomMiningJob
// has at most 64 KiB of outputs, 255 bytes of prefix and 255 merkle nodes,
// all doubled by hex.
const MaxHTTPBody = 1 << 18

// Hex is a byte string that JSON carries as lower-case hex.
type Hex []byte

// MarshalJSON encodes h as a hex string.
func (h Hex) MarshalJSON() ([]byte, error) {
	return json.Marshal(hex.EncodeToString(h))
}

// UnmarshalJSON decodes a hex string.
func (h *Hex) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a hex string: %w", err)
	}
	v, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("bad hex: %w", err)
	}
	*h = v
	return nil
}

// Hash32 is a 32-byte hash that JSON carries as 64 hex digits in the wire
// (internal) byte order, as the SV2 messages carry it.
type Hash32 [32]byte

// MarshalJSON encodes h as 64 hex digits.
func (h Hash32) MarshalJSON() ([]byte, error) {
	return json.Marshal(hex.EncodeToString(h[:]))
}

// UnmarshalJSON decodes 64 hex digits.
func (h *Hash32) UnmarshalJSON(b []byte) error {
	var v Hex
	if err := v.UnmarshalJSON(b); err != nil {
		return err
	}
	if len(v) != 32 {
		return fmt.Errorf("want 32 bytes (64 hex digits), got %d bytes", len(v))
	}
	copy(h[:], v)
	return nil
}

// CustomJobJSON is a SetCustomMiningJob as the HTTP API carries it; field
// names follow the spec's.
type CustomJobJSON struct {
	ChannelID                uint32   `json:"channel_id"`
	RequestID                uint32   `json:"request_id"`
	MiningJobToken           Hex      `json:"mining_job_token"`
	Version                  uint32   `json:"version"`
	PrevHash                 Hash32   `json:"prev_hash"`
	MinNTime                 uint32   `json:"min_ntime"`
	NBits                    uint32   `json:"nbits"`
	CoinbaseTxVersion        uint32   `json:"coinbase_tx_version"`
	CoinbasePrefix           Hex      `json:"coinbase_prefix"`
	CoinbaseTxInputNSequence uint32   `json:"coinbase_tx_input_n_sequence"`
	CoinbaseTxOutputs        Hex      `json:"coinbase_tx_outputs"`
	CoinbaseTxLocktime       uint32   `json:"coinbase_tx_locktime"`
	MerklePath               []Hash32 `json:"merkle_path"`
}

// CustomJobToJSON converts a message to its JSON form.
func CustomJobToJSON(m *messages.SetCustomMiningJob) CustomJobJSON {
	j := CustomJobJSON{
		ChannelID: m.ChannelID, RequestID: m.RequestID, MiningJobToken: m.MiningJobToken,
		Version: m.Version, PrevHash: m.PrevHash, MinNTime: m.MinNTime, NBits: m.NBits,
		CoinbaseTxVersion: m.CoinbaseTxVersion, CoinbasePrefix: m.CoinbasePrefix,
		CoinbaseTxInputNSequence: m.CoinbaseTxInputNSequence, CoinbaseTxOutputs: m.CoinbaseTxOutputs,
		CoinbaseTxLocktime: m.CoinbaseTxLocktime, MerklePath: make([]Hash32, len(m.MerklePath)),
	}
	for i, p := range m.MerklePath {
		j.MerklePath[i] = p
	}
	return j
}

// Message converts the JSON form back to the message.
func (j *CustomJobJSON) Message() *messages.SetCustomMiningJob {
	m := &messages.SetCustomMiningJob{
		ChannelID: j.ChannelID, RequestID: j.RequestID, MiningJobToken: j.MiningJobToken,
		Version: j.Version, PrevHash: j.PrevHash, MinNTime: j.MinNTime, NBits: j.NBits,
		CoinbaseTxVersion: j.CoinbaseTxVersion, CoinbasePrefix: j.CoinbasePrefix,
		CoinbaseTxInputNSequence: j.CoinbaseTxInputNSequence, CoinbaseTxOutputs: j.CoinbaseTxOutputs,
		CoinbaseTxLocktime: j.CoinbaseTxLocktime, MerklePath: make([][32]byte, len(j.MerklePath)),
	}
	for i, p := range j.MerklePath {
		m.MerklePath[i] = p
	}
	return m
}

// ValidateRequest is the body of POST /v1/custom-jobs/validate.
type ValidateRequest struct {
	// UserIdentity is the user identity of the channel the job came on
	// (OpenExtendedMiningChannel.user_identity).
	UserIdentity string        `json:"user_identity"`
	Job          CustomJobJSON `json:"job"`
}

// BlockShareJSON is a BlockShare as the HTTP API carries it.
type BlockShareJSON struct {
	MiningJobToken Hex    `json:"mining_job_token"`
	Version        uint32 `json:"version"`
	NTime          uint32 `json:"ntime"`
	Nonce          uint32 `json:"nonce"`
	Extranonce     Hex    `json:"extranonce"`
}

// BlockRequest is the body of POST /v1/blocks.
type BlockRequest struct {
	UserIdentity string         `json:"user_identity"`
	Share        BlockShareJSON `json:"share"`
}

// ErrorResponse is the body of a 4xx/5xx answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

// DecodeValidateRequest reads and checks a validate body.
func DecodeValidateRequest(body []byte) (*ValidateRequest, error) {
	var r ValidateRequest
	if err := decodeStrict(body, &r); err != nil {
		return nil, err
	}
	if len(r.Job.MiningJobToken) > 255 {
		return nil, errors.New("job.mining_job_token: longer than 255 bytes")
	}
	if len(r.Job.CoinbasePrefix) > 255 {
		return nil, errors.New("job.coinbase_prefix: longer than 255 bytes")
	}
	if len(r.Job.CoinbaseTxOutputs) > 0xffff {
		return nil, errors.New("job.coinbase_tx_outputs: longer than 65535 bytes")
	}
	if len(r.Job.MerklePath) > 255 {
		return nil, errors.New("job.merkle_path: more than 255 nodes")
	}
	return &r, nil
}

// DecodeBlockRequest reads and checks a block hand-over body.
func DecodeBlockRequest(body []byte) (*BlockRequest, error) {
	var r BlockRequest
	if err := decodeStrict(body, &r); err != nil {
		return nil, err
	}
	if len(r.Share.MiningJobToken) > 255 {
		return nil, errors.New("share.mining_job_token: longer than 255 bytes")
	}
	if len(r.Share.Extranonce) > 32 {
		return nil, errors.New("share.extranonce: longer than 32 bytes")
	}
	return &r, nil
}

func decodeStrict(body []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		// A Hex or Hash32 error does not say which field it is about;
		// find it, so the caller learns what to fix.
		if ferr := fieldError(body, reflect.TypeOf(v).Elem(), ""); ferr != nil {
			return fmt.Errorf("bad JSON body: %w", ferr)
		}
		return fmt.Errorf("bad JSON body: %w", err)
	}
	if d.More() {
		return errors.New("bad JSON body: trailing data after the object")
	}
	return nil
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// fieldError decodes raw as a t field by field and returns the first
// failure as `field "job.merkle_path[1]": ...`, or nil when no single
// field fails (syntax error, unknown field: the decoder's error says it).
// It runs only after a failed decode, on a body of at most MaxHTTPBody.
func fieldError(raw []byte, t reflect.Type, path string) error {
	switch {
	case reflect.PointerTo(t).Implements(unmarshalerType) || (t.Kind() != reflect.Struct && t.Kind() != reflect.Slice):
		if err := json.Unmarshal(raw, reflect.New(t).Interface()); err != nil {
			return fmt.Errorf("field %q: %w", path, err)
		}
	case t.Kind() == reflect.Slice:
		var elems []json.RawMessage
		if json.Unmarshal(raw, &elems) != nil {
			return nil
		}
		for i, e := range elems {
			if err := fieldError(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	default:
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return nil
		}
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			sub := name
			if path != "" {
				sub = path + "." + name
			}
			// encoding/json matches keys case-insensitively.
			for k, v := range obj {
				if strings.EqualFold(k, name) {
					if err := fieldError(v, t.Field(i).Type, sub); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// NewHTTPHandler serves the pool API for api (normally the *Server):
// POST /v1/custom-jobs/validate answers a Verdict, POST /v1/blocks a
// BlockResult. Errors are an ErrorResponse: 400 bad body, 413 body over
// MaxHTTPBody, 415 not application/json, 422 a *BlockError, 503 any other
// error of api; a wrong method (405) or path (404) gets ServeMux's plain
// text. docs/jds.md lists them; keep it in step.
func NewHTTPHandler(api PoolAPI, log hclog.Logger) http.Handler {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathValidate, func(w http.ResponseWriter, r *http.Request) {
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		req, err := DecodeValidateRequest(body)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: err.Error()})
			return
		}
		v, err := api.ValidateCustomJob(r.Context(), req.UserIdentity, req.Job.Message())
		if err != nil {
			log.Warn("pool API: validate failed", "error", err)
			writeJSON(w, http.StatusServiceUnavailable, ErrorResponse{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, v)
	})
	mux.HandleFunc("POST "+PathBlocks, func(w http.ResponseWriter, r *http.Request) {
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		req, err := DecodeBlockRequest(body)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: err.Error()})
			return
		}
		s := req.Share
		res, err := api.SubmitBlockShare(r.Context(), req.UserIdentity, BlockShare{
			MiningJobToken: s.MiningJobToken, Version: s.Version, NTime: s.NTime, Nonce: s.Nonce,
			Extranonce: s.Extranonce,
		})
		if err != nil {
			var be *BlockError
			if errors.As(err, &be) {
				writeJSON(w, http.StatusUnprocessableEntity, ErrorResponse{Error: err.Error()})
				return
			}
			log.Warn("pool API: block hand-over failed", "error", err)
			writeJSON(w, http.StatusServiceUnavailable, ErrorResponse{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	return mux
}

// BlockError is SubmitBlockShare's error when the share itself is wrong
// (unknown token, not a block): resubmitting it cannot help. Over HTTP it
// is a 422 answer.
type BlockError struct {
	Code    string
	Details string
}

func (e *BlockError) Error() string { return e.Code + ": " + e.Details }

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeJSON(w, http.StatusUnsupportedMediaType, ErrorResponse{Error: "Content-Type must be application/json"})
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxHTTPBody))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, ErrorResponse{Error: "body: " + err.Error()})
		return nil, false
	}
	return body, true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// HTTPClient is a PoolAPI that calls a JDS's HTTP API.
type HTTPClient struct {
	// ValidateTimeout bounds ValidateCustomJob (default 10 s) and
	// BlockTimeout SubmitBlockShare (default DefaultSubmitTimeout + 15 s:
	// the JDS retries submitblock that long while its node cannot be
	// reached). A ctx that ends sooner wins. Set them before the first call.
	ValidateTimeout time.Duration
	BlockTimeout    time.Duration

	base string
	hc   *http.Client
}

// NewHTTPClient returns a PoolAPI for the JDS API at baseURL (e.g.
// "http://127.0.0.1:34266").
func NewHTTPClient(baseURL string) *HTTPClient {
	return &HTTPClient{base: strings.TrimRight(baseURL, "/"), hc: &http.Client{},
		ValidateTimeout: 10 * time.Second, BlockTimeout: DefaultSubmitTimeout + 15*time.Second}
}

var _ PoolAPI = (*HTTPClient)(nil)

// ValidateCustomJob implements PoolAPI.
func (c *HTTPClient) ValidateCustomJob(ctx context.Context, userIdentity string, job *messages.SetCustomMiningJob) (Verdict, error) {
	var v Verdict
	ctx, cancel := context.WithTimeout(ctx, c.ValidateTimeout)
	defer cancel()
	err := c.post(ctx, PathValidate, ValidateRequest{UserIdentity: userIdentity, Job: CustomJobToJSON(job)}, &v)
	return v, err
}

// SubmitBlockShare implements PoolAPI. A share the JDS refuses (unknown
// token, not a block) is a *BlockError.
func (c *HTTPClient) SubmitBlockShare(ctx context.Context, userIdentity string, share BlockShare) (BlockResult, error) {
	var res BlockResult
	ctx, cancel := context.WithTimeout(ctx, c.BlockTimeout)
	defer cancel()
	err := c.post(ctx, PathBlocks, BlockRequest{UserIdentity: userIdentity, Share: BlockShareJSON{
		MiningJobToken: share.MiningJobToken, Version: share.Version, NTime: share.NTime,
		Nonce: share.Nonce, Extranonce: share.Extranonce,
	}}, &res)
	return res, err
}

func (c *HTTPClient) post(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("jds api %s: %w", path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("jds api %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("jds api %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxHTTPBody))
	if err != nil {
		return fmt.Errorf("jds api %s: reading answer: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e ErrorResponse
		_ = json.Unmarshal(data, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		if resp.StatusCode == http.StatusUnprocessableEntity {
			code, details, _ := strings.Cut(e.Error, ": ")
			return &BlockError{Code: code, Details: details}
		}
		return fmt.Errorf("jds api %s: %s: %s", path, resp.Status, e.Error)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("jds api %s: bad answer: %w", path, err)
	}
	return nil
}
