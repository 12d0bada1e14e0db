package declare

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/sv2/messages"
)

// recordingAPI answers from fixed values and records what it was asked.
type recordingAPI struct {
	job   *messages.SetCustomMiningJob
	user  string
	share BlockShare
	err   error
}

func (r *recordingAPI) ValidateCustomJob(_ context.Context, user string, job *messages.SetCustomMiningJob) (Verdict, error) {
	r.user, r.job = user, job
	return Verdict{Code: "x", Details: "y"}, r.err
}

func (r *recordingAPI) SubmitBlockShare(_ context.Context, user string, s BlockShare) (BlockResult, error) {
	r.user, r.share = user, s
	return BlockResult{Hash: "h", Accepted: true}, r.err
}

// TestHTTPRoundTrip: what the client sends is what the handler hands to
// the API, errors keep their kind, and bad bodies get 4xx.
func TestHTTPRoundTrip(t *testing.T) {
	api := &recordingAPI{}
	srv := httptest.NewServer(NewHTTPHandler(api, nil))
	defer srv.Close()
	c := NewHTTPClient(srv.URL + "/")
	job := &messages.SetCustomMiningJob{ChannelID: 3, RequestID: 4, MiningJobToken: []byte{1, 2}, Version: 5, PrevHash: [32]byte{6},
		MinNTime: 7, NBits: 8, CoinbaseTxVersion: 2, CoinbasePrefix: []byte{9}, CoinbaseTxInputNSequence: 10,
		CoinbaseTxOutputs: []byte{11, 12}, CoinbaseTxLocktime: 13, MerklePath: [][32]byte{{14}, {15}}}
	v, err := c.ValidateCustomJob(context.Background(), "alice", job)
	if err != nil || v.Code != "x" || api.user != "alice" || api.job.PrevHash != job.PrevHash || api.job.MerklePath[1] != job.MerklePath[1] ||
		string(api.job.CoinbaseTxOutputs) != string(job.CoinbaseTxOutputs) || api.job.CoinbaseTxLocktime != 13 {
		t.Fatalf("%+v %v %+v", v, err, api.job)
	}
	share := BlockShare{MiningJobToken: []byte{1}, Version: 2, NTime: 3, Nonce: 4, Extranonce: []byte{5, 6}}
	res, err := c.SubmitBlockShare(context.Background(), "bob", share)
	if err != nil || !res.Accepted || api.share.Nonce != 4 || string(api.share.Extranonce) != "\x05\x06" {
		t.Fatalf("%+v %v %+v", res, err, api.share)
	}
	api.err = &BlockError{Code: CodeNotABlock, Details: "no"}
	_, err = c.SubmitBlockShare(context.Background(), "bob", share)
	var be *BlockError
	if !errors.As(err, &be) || be.Code != CodeNotABlock || be.Details != "no" {
		t.Fatalf("%v", err)
	}
	api.err = errors.New("node down")
	if _, err := c.ValidateCustomJob(context.Background(), "alice", job); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("%v", err)
	}
	for _, tc := range []struct {
		path, ctype, body string
		status            int
	}{
		{PathValidate, "application/json", `{"job":{"prev_hash":"00"}}`, 400},
		{PathValidate, "application/json", `{"job":{}, "extra":1}`, 400},
		{PathValidate, "text/plain", `{}`, 415},
		{PathBlocks, "application/json", `{"share":{"extranonce":"` + strings.Repeat("00", 33) + `"}}`, 400},
		{PathBlocks, "application/json", `{"share":{}} {}`, 400},
		{PathBlocks, "application/json", `{"user_identity":"` + strings.Repeat("a", MaxHTTPBody) + `"}`, 413},
	} {
		resp, err := http.Post(srv.URL+tc.path, tc.ctype, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %.40s: %d, want %d", tc.path, tc.body, resp.StatusCode, tc.status)
		}
	}
	if resp, err := http.Get(srv.URL + PathValidate); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %v %v", resp, err)
	}
}

// slowAPI takes d to answer a block hand-over, as a JDS does while it
// retries submitblock to a node that is restarting.
type slowAPI struct {
	recordingAPI
	d time.Duration
}

func (s *slowAPI) SubmitBlockShare(ctx context.Context, user string, sh BlockShare) (BlockResult, error) {
	time.Sleep(s.d)
	return s.recordingAPI.SubmitBlockShare(ctx, user, sh)
}

// TestHTTPClientBlockTimeout: a block hand-over may take as long as the
// JDS's submitblock retries; the client waits BlockTimeout for it, not the
// validation timeout.
func TestHTTPClientBlockTimeout(t *testing.T) {
	srv := httptest.NewServer(NewHTTPHandler(&slowAPI{d: 300 * time.Millisecond}, nil))
	defer srv.Close()
	c := NewHTTPClient(srv.URL)
	c.ValidateTimeout = 100 * time.Millisecond
	c.BlockTimeout = 5 * time.Second
	if res, err := c.SubmitBlockShare(context.Background(), "u", BlockShare{MiningJobToken: []byte{1}}); err != nil || !res.Accepted {
		t.Fatalf("%+v %v", res, err)
	}
	if NewHTTPClient(srv.URL).BlockTimeout <= DefaultSubmitTimeout {
		t.Fatal("default block timeout does not cover the JDS's submit retries")
	}
}

// TestDecodeNamesField: an error in one field names that field, so whoever
// calls the API learns what to fix; errors not about one field keep the
// decoder's wording.
func TestDecodeNamesField(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
		block            bool
	}{
		{"token bad hex", `{"job":{"mining_job_token":"zz"}}`, `field "job.mining_job_token": bad hex: `, false},
		{"prev_hash short", `{"job":{"prev_hash":"00"}}`, `field "job.prev_hash": want 32 bytes`, false},
		{"merkle node", `{"job":{"merkle_path":["` + strings.Repeat("00", 32) + `","0g"]}}`, `field "job.merkle_path[1]": bad hex: `, false},
		{"prefix not a string", `{"job":{"coinbase_prefix":5}}`, `field "job.coinbase_prefix": want a hex string`, false},
		{"outputs odd", `{"job":{"coinbase_tx_outputs":"abc"}}`, `field "job.coinbase_tx_outputs": bad hex: `, false},
		{"version not a number", `{"job":{"version":"x"}}`, `field "job.version": `, false},
		{"key case", `{"job":{"Mining_Job_Token":"zz"}}`, `field "job.mining_job_token": bad hex: `, false},
		{"share extranonce", `{"share":{"extranonce":"0"}}`, `field "share.extranonce": bad hex: `, true},
		{"share token", `{"user_identity":"a","share":{"mining_job_token":"xy"}}`, `field "share.mining_job_token": bad hex: `, true},
		{"unknown field", `{"job":{},"extra":1}`, `unknown field "extra"`, false},
		{"syntax", `{"job":`, `bad JSON body: unexpected EOF`, false},
	} {
		var err error
		if tc.block {
			_, err = DecodeBlockRequest([]byte(tc.body))
		} else {
			_, err = DecodeValidateRequest([]byte(tc.body))
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
	// The HTTP answer carries it.
	srv := httptest.NewServer(NewHTTPHandler(&recordingAPI{}, nil))
	defer srv.Close()
	resp, err := http.Post(srv.URL+PathValidate, "application/json", strings.NewReader(`{"job":{"mining_job_token":"zz"}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e ErrorResponse
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != http.StatusBadRequest ||
		!strings.Contains(e.Error, `field "job.mining_job_token": bad hex`) {
		t.Fatalf("%d %+v %v", resp.StatusCode, e, err)
	}
}

// TestHTTPStatuses: every answer the handler gives, with its exact body and
// Content-Type, as docs/jds.md lists them.
func TestHTTPStatuses(t *testing.T) {
	api := &recordingAPI{}
	srv := httptest.NewServer(NewHTTPHandler(api, nil))
	defer srv.Close()
	const job = `{"user_identity":"a","job":{}}`
	for _, tc := range []struct {
		name, method, path, ctype, body string
		apiErr                          error
		status                          int
		wantCT, wantBody                string
	}{
		{"verdict", "POST", PathValidate, "application/json", job, nil, 200, "application/json",
			`{"ok":false,"code":"x","details":"y"}`},
		{"no content type", "POST", PathValidate, "", job, nil, 200, "application/json",
			`{"ok":false,"code":"x","details":"y"}`},
		{"block", "POST", PathBlocks, "application/json", `{"share":{}}`, nil, 200, "application/json",
			`{"hash":"h","accepted":true,"result":""}`},
		{"bad body", "POST", PathValidate, "application/json", `{"job":{"prev_hash":"00"}}`, nil, 400, "application/json",
			`{"error":"bad JSON body: field \"job.prev_hash\": want 32 bytes (64 hex digits), got 1 bytes"}`},
		{"block error", "POST", PathBlocks, "application/json", `{"share":{}}`, &BlockError{Code: CodeNotABlock, Details: "no"}, 422, "application/json",
			`{"error":"share-not-a-block: no"}`},
		{"check failed", "POST", PathValidate, "application/json", job, errors.New("node down"), 503, "application/json",
			`{"error":"node down"}`},
		{"block failed", "POST", PathBlocks, "application/json", `{"share":{}}`, errors.New("submitblock h: down"), 503, "application/json",
			`{"error":"submitblock h: down"}`},
		{"content type", "POST", PathValidate, "text/plain", job, nil, 415, "application/json",
			`{"error":"Content-Type must be application/json"}`},
		{"too large", "POST", PathBlocks, "application/json", `{"user_identity":"` + strings.Repeat("a", MaxHTTPBody) + `"}`, nil, 413, "application/json",
			`{"error":"body: http: request body too large"}`},
		{"method", "GET", PathValidate, "", "", nil, 405, "text/plain; charset=utf-8", "Method Not Allowed"},
		{"path", "POST", "/v1/other", "application/json", "{}", nil, 404, "text/plain; charset=utf-8", "404 page not found"},
	} {
		api.err = tc.apiErr
		req, err := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != tc.wantCT || strings.TrimSpace(string(body)) != tc.wantBody {
			t.Errorf("%s: %d %q %q, want %d %q %q", tc.name, resp.StatusCode, resp.Header.Get("Content-Type"), body,
				tc.status, tc.wantCT, tc.wantBody)
		}
		if tc.status == 405 && resp.Header.Get("Allow") != "POST" {
			t.Errorf("405 Allow: %q", resp.Header.Get("Allow"))
		}
	}
}
