package events

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/kar-runtime/kar/internal/wait"
)

// deliverSink posts one event to a subscription's sink as a CloudEvent in
// binary mode, with Knative Eventing's delivery semantics: 2xx is
// delivered; 404, 408, 409, 429, 5xx and network errors are retried (the
// error returned makes the runner back off and call again, attempt+1) up
// to sub.Retry times (absent: Options.MaxAttempts attempts in all); any
// other answer, or retries exhausted, sends the event to the dead letter
// sink. Without one, or when the dead letter sink does not take it either,
// the error returned is Rejected: the runner puts the event in the
// application's dead-letter topic.
func (s *Service) deliverSink(ctx context.Context, sub Subscription, p published, attempt int) error {
	status, err := s.post(ctx, sub.Sink, p)
	if err == nil && status/100 == 2 {
		return nil
	}
	reason := ""
	if err != nil {
		reason = err.Error()
	} else {
		reason = "status " + strconv.Itoa(status)
	}
	if err != nil || retryable(status) {
		retries := s.opts.MaxAttempts - 1
		if sub.Retry != nil {
			retries = *sub.Retry
		}
		if attempt <= retries {
			return fmt.Errorf("sink %s: %s", sub.Sink, reason)
		}
		reason += fmt.Sprintf(" after %d retries", retries)
	}
	if s.deadLetter(ctx, sub, p, status, reason) {
		return nil
	}
	return Rejected(fmt.Errorf("sink %s: %s", sub.Sink, reason))
}

// retryable are the answers Knative retries.
func retryable(status int) bool {
	switch status {
	case http.StatusNotFound, http.StatusRequestTimeout, http.StatusConflict, http.StatusTooManyRequests:
		return true
	}
	return status >= 500
}

// post sends the event and returns the status (err: no answer).
func (s *Service) post(ctx context.Context, url string, p published) (int, error) {
	req, err := newBinaryRequest(ctx, url, p.ev)
	if err != nil {
		return 0, err
	}
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// deadLetter hands an undeliverable event to the dead letter sink, with
// Knative's error extensions, trying a few times, and reports whether it
// took the event (false also without a dead letter sink).
func (s *Service) deadLetter(ctx context.Context, sub Subscription, p published, status int, reason string) bool {
	if sub.DeadLetterSink == "" {
		return false
	}
	ev := p.ev.Clone()
	ev.SetExtension("knativeerrordest", sub.Sink)
	if status != 0 {
		ev.SetExtension("knativeerrorcode", strconv.Itoa(status))
	}
	dl := published{ev: &ev, wrapped: p.wrapped}
	backoff := s.opts.RetryMin
	for attempt := 1; attempt <= 3; attempt++ {
		st, err := s.post(ctx, sub.DeadLetterSink, dl)
		if err == nil && st/100 == 2 {
			s.log.Warn("events: sink rejected an event; sent it to the dead letter sink", "subscription", sub.ID,
				"sink", sub.Sink, "event", p.ev.ID(), "reason", oneLine(reason))
			return true
		}
		if !wait.Sleep(ctx, backoff) {
			return false
		}
		backoff = min(2*backoff, s.opts.RetryMax, 5*time.Second)
	}
	s.log.Warn("events: the dead letter sink did not take an event either", "subscription", sub.ID,
		"sink", sub.Sink, "dead_letter_sink", sub.DeadLetterSink, "event", p.ev.ID(), "reason", oneLine(reason))
	return false
}
