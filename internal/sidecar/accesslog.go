package sidecar

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"
)

// accessLog writes one structured line for a sampled share of the app's requests:
// what was asked and what became of it, never the prompt, the answer or a key.
// A nil accessLog (the default) writes nothing.
type accessLog struct {
	log    *slog.Logger
	sample float64 // the share of requests logged, in (0, 1]
}

func newAccessLog(log *slog.Logger, sample float64) *accessLog {
	if sample <= 0 {
		return nil
	}
	return &accessLog{log: log, sample: min(sample, 1)}
}

func (a *accessLog) write(x *exchange, end time.Time) {
	if a == nil || (a.sample < 1 && rand.Float64() >= a.sample) {
		return
	}
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs, slog.String("method", x.r.Method), slog.String("path", x.r.URL.Path),
		slog.String("model", x.req.Model))
	if up := x.route.up; up != nil {
		attrs = append(attrs, slog.String("entry", up.cfg.Name+"/"+x.route.model), slog.String("pool", x.pool.Name))
	}
	if x.live != nil {
		attrs = append(attrs, slog.Int("priority", x.priority))
	}
	if x.settled.UsageKnown {
		attrs = append(attrs, slog.Int64("inputTokens", x.settled.Usage.InputTokens), slog.Int64("outputTokens", x.settled.Usage.OutputTokens))
	}
	attrs = append(attrs, slog.Int64("queuedMs", x.queued.Milliseconds()), slog.Int("retries", x.retries),
		slog.String("outcome", x.outcome), slog.Int64("durationMs", end.Sub(x.start).Milliseconds()))
	a.log.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
}
