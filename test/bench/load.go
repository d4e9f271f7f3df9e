package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ServedByHeader is the header the limiter adds to every answer it relays; its
// presence proves a response really went through the limiter.
const ServedByHeader = "X-Aiquota-Served-By"

// Target is one path to the simulator: the simulator itself or a proxy in front.
type Target struct {
	Name    string // "direct", "plain", "limiter"
	BaseURL string // scheme://host:port, without a trailing slash
}

// Workload is the request every path gets: an OpenAI chat completion.
type Workload struct {
	Model     string
	APIKey    string // sent as the app's bearer token; the limiter replaces it with its own
	BodyBytes int    // exact size of every request body
	MaxTokens int
	Stream    bool
}

// Client is the load generator's HTTP side, built so that it is not the
// bottleneck: keep-alive connections with room for every concurrent request, no
// compression, request bodies patched from a template instead of encoded.
type Client struct {
	hc  *http.Client
	seq atomic.Uint64
}

// NewClient returns a client keeping up to maxConns idle connections per target.
func NewClient(maxConns int) *Client {
	return &Client{hc: &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0, // no overall cap; the per-host one applies
		MaxIdleConnsPerHost: maxConns,
		IdleConnTimeout:     2 * time.Minute,
		DisableCompression:  true,
	}}}
}

// CloseIdle drops idle connections, so that one path's connections do not linger
// while another is measured.
func (c *Client) CloseIdle() { c.hc.CloseIdleConnections() }

// Result is one load run against one target.
type Result struct {
	Target string
	// Latencies of the successful requests. Open loop: from each request's
	// scheduled send time (so a stall delays and counts against every request
	// scheduled during it); closed loop: from its actual send.
	Latencies []time.Duration
	Sent      int
	OK        int
	Failed    int
	// ServedBy counts responses carrying ServedByHeader.
	ServedBy   int
	FirstError string
	// Elapsed runs from the first (scheduled) send to the last completion.
	Elapsed time.Duration
}

// Rate is the completed requests per second over Elapsed.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK+r.Failed) / r.Elapsed.Seconds()
}

type outcome struct {
	ok       bool
	servedBy bool
	err      string
}

// OpenLoop sends n requests to t at a fixed rate: request i is due at
// start + i/rate whatever happened to the ones before (arrivals on a schedule, as
// from many independent users), and its latency counts from that due time, which
// avoids coordinated omission. At most maxInFlight requests are outstanding; past
// that the schedule waits, and the wait is part of the latency.
func (c *Client) OpenLoop(ctx context.Context, t Target, w Workload, rate float64, n, maxInFlight int) (Result, error) {
	if rate <= 0 || n <= 0 || maxInFlight <= 0 {
		return Result{}, fmt.Errorf("open loop: rate %v, count %d and max in flight %d must be positive", rate, n, maxInFlight)
	}
	tmpl, err := newBodyTemplate(w)
	if err != nil {
		return Result{}, err
	}
	lat := make([]time.Duration, n)
	outs := make([]outcome, n)
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	interval := float64(time.Second) / rate
	start := time.Now().Add(5 * time.Millisecond)
	sent := 0
schedule:
	for i := range n {
		due := start.Add(time.Duration(float64(i) * interval))
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break schedule
		}
		sent++
		wg.Go(func() {
			defer func() { <-sem }()
			outs[i] = c.do(ctx, t, w, tmpl)
			lat[i] = time.Since(due)
		})
	}
	wg.Wait()
	end := time.Now()
	res := Result{Target: t.Name, Sent: sent, Elapsed: end.Sub(start)}
	res.Latencies = make([]time.Duration, 0, sent)
	for i := range sent {
		res.add(outs[i], lat[i])
	}
	return res, ctx.Err()
}

// ClosedLoop runs concurrency clients, each sending its next request as soon as
// the previous one completes, for d. Its rate is the path's throughput at that
// concurrency.
func (c *Client) ClosedLoop(ctx context.Context, t Target, w Workload, concurrency int, d time.Duration) (Result, error) {
	if concurrency <= 0 || d <= 0 {
		return Result{}, fmt.Errorf("closed loop: concurrency %d and duration %s must be positive", concurrency, d)
	}
	tmpl, err := newBodyTemplate(w)
	if err != nil {
		return Result{}, err
	}
	type part struct {
		lat  []time.Duration
		outs []outcome
	}
	parts := make([]part, concurrency)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for k := range parts {
		wg.Go(func() {
			p := &parts[k]
			for time.Now().Before(deadline) && ctx.Err() == nil {
				sent := time.Now()
				o := c.do(ctx, t, w, tmpl)
				p.lat = append(p.lat, time.Since(sent))
				p.outs = append(p.outs, o)
			}
		})
	}
	wg.Wait()
	res := Result{Target: t.Name, Elapsed: time.Since(start)}
	for _, p := range parts {
		res.Sent += len(p.outs)
		for i, o := range p.outs {
			res.add(o, p.lat[i])
		}
	}
	return res, ctx.Err()
}

func (r *Result) add(o outcome, l time.Duration) {
	if o.servedBy {
		r.ServedBy++
	}
	if !o.ok {
		r.Failed++
		if r.FirstError == "" {
			r.FirstError = o.err
		}
		return
	}
	r.OK++
	r.Latencies = append(r.Latencies, l)
}

// requestTimeout bounds one request; far above any latency the benchmark expects.
const requestTimeout = 30 * time.Second

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// do sends one request and reads the whole response, checking that it is a
// complete answer: 200, and for a stream the final "data: [DONE]" event.
func (c *Client) do(ctx context.Context, t Target, w Workload, tmpl *bodyTemplate) outcome {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	body := tmpl.body(c.seq.Add(1))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.BaseURL+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return outcome{err: "build request: " + err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+w.APIKey)
	resp, err := c.hc.Do(req)
	if err != nil {
		return outcome{err: err.Error()}
	}
	defer resp.Body.Close()
	o := outcome{servedBy: resp.Header.Get(ServedByHeader) != ""}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	tail, n, err := readTail(resp.Body, *bp)
	switch {
	case err != nil:
		o.err = fmt.Sprintf("read %s response after %d bytes: %v", t.Name, n, err)
	case resp.StatusCode != http.StatusOK:
		o.err = fmt.Sprintf("%s answered %d: %.200s", t.Name, resp.StatusCode, tail)
	case w.Stream && !bytes.HasSuffix(tail, []byte("data: [DONE]\n\n")):
		o.err = fmt.Sprintf("%s stream did not end with data: [DONE]; its tail: %q", t.Name, tail)
	case !w.Stream && !bytes.HasSuffix(bytes.TrimSpace(tail), []byte("}")):
		o.err = fmt.Sprintf("%s answer is not a whole JSON object; its tail: %q", t.Name, tail)
	default:
		o.ok = true
	}
	return o
}

// tailBytes is how much of a response's end is kept for checking it.
const tailBytes = 256

// readTail reads r to the end through buf and returns its last bytes and length.
func readTail(r io.Reader, buf []byte) ([]byte, int64, error) {
	var tail []byte
	var n int64
	for {
		k, err := r.Read(buf)
		if k > 0 {
			n += int64(k)
			tail = append(tail, buf[:k]...)
			if len(tail) > tailBytes {
				tail = tail[len(tail)-tailBytes:]
			}
		}
		if err == io.EOF {
			return tail, n, nil
		}
		if err != nil {
			return tail, n, err
		}
	}
}

// systemPrompt is the same in every request, as an app's is: the limiter's token
// memo counts it once and then recognises it.
const systemPrompt = "You are a concise assistant for an online bookshop. Answer in at most three sentences, " +
	"cite the catalogue number when you mention a book, and never invent prices or stock levels."

// fillerWords make up the user message: ordinary English, so the tokenizer does
// ordinary work on it.
var fillerWords = strings.Fields(`please find me a few novels about sailing in winter with a strong
	female lead and some history of the northern trade routes also check whether the second edition of
	the atlas is back in stock and what the delivery time to the coast would be for an order placed
	this week together with two gift cards and a set of bookmarks`)

// seqDigits is the width of the request number that makes each user message unique.
const seqDigits = 10

// bodyTemplate is a request body of exactly the workload's size with a slot for a
// request number in the user message.
type bodyTemplate struct {
	b     []byte
	seqAt int
}

func newBodyTemplate(w Workload) (*bodyTemplate, error) {
	type message struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	type request struct {
		Model     string    `json:"model"`
		Messages  []message `json:"messages"`
		MaxTokens int       `json:"max_tokens"`
		Stream    bool      `json:"stream,omitempty"`
	}
	marker := "Request " + strings.Repeat("0", seqDigits) + "."
	encode := func(user string) ([]byte, error) {
		return json.Marshal(request{Model: w.Model, MaxTokens: w.MaxTokens, Stream: w.Stream,
			Messages: []message{{"system", systemPrompt}, {"user", user}}})
	}
	b, err := encode(marker)
	if err != nil {
		return nil, fmt.Errorf("encode request body: %w", err)
	}
	need := w.BodyBytes - len(b)
	if need < 0 {
		return nil, fmt.Errorf("request body of %d bytes asked for, but the smallest is %d", w.BodyBytes, len(b))
	}
	var user strings.Builder
	user.WriteString(marker)
	for i := 0; user.Len() < len(marker)+need; i++ {
		user.WriteString(" " + fillerWords[i%len(fillerWords)])
	}
	text := user.String()[:len(marker)+need]
	if b, err = encode(text); err != nil {
		return nil, fmt.Errorf("encode request body: %w", err)
	}
	at := bytes.Index(b, []byte(marker))
	if at < 0 || len(b) != w.BodyBytes {
		return nil, fmt.Errorf("request body template is %d bytes, want %d", len(b), w.BodyBytes)
	}
	return &bodyTemplate{b: b, seqAt: at + len("Request ")}, nil
}

// body returns a fresh copy of the template numbered seq (modulo 10^seqDigits).
func (t *bodyTemplate) body(seq uint64) []byte {
	b := make([]byte, len(t.b))
	copy(b, t.b)
	digits := strconv.FormatUint(seq, 10)
	if len(digits) > seqDigits {
		digits = digits[len(digits)-seqDigits:]
	}
	copy(b[t.seqAt+seqDigits-len(digits):], digits)
	return b
}
