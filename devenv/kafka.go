package devenv

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// kafkaServer is a kfake cluster of one broker (or Options.KafkaBrokers)
// on fixed addresses, so it can be stopped and served again on the same
// ports.
type kafkaServer struct {
	opts *Options

	mu      sync.Mutex
	cluster *kfake.Cluster
	bound   []string      // the brokers' addresses after the first start (ports 0 resolved)
	sweeper chan struct{} // closed to stop the retention sweeper
}

// addr is the first broker's address.
func (k *kafkaServer) addr() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.bound) == 0 {
		return ""
	}
	return k.bound[0]
}

// addrs are every broker's address.
func (k *kafkaServer) addrs() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.bound)
}

// kfake is the running cluster, nil while stopped.
func (k *kafkaServer) kfake() *kfake.Cluster {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cluster
}

func (k *kafkaServer) start() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cluster != nil {
		return nil
	}
	n := max(k.opts.KafkaBrokers, 1)
	addrs := k.bound
	if len(addrs) == 0 {
		// The first broker on KafkaAddr, the others on free ports of its host.
		host, _, _ := net.SplitHostPort(k.opts.KafkaAddr)
		addrs = []string{k.opts.KafkaAddr}
		for len(addrs) < n {
			addrs = append(addrs, net.JoinHostPort(host, "0"))
		}
	}
	// We open the listeners ourselves: kfake would bind 127.0.0.1 only and
	// give no typed error for a port in use. kfake asks for them in broker
	// order, once each.
	var lns []net.Listener
	closeAll := func() {
		for _, l := range lns {
			l.Close()
		}
	}
	for _, a := range addrs {
		ln, err := listen("Kafka", a)
		if err != nil {
			closeAll()
			return err
		}
		lns = append(lns, ln)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(n),
		kfake.ListenFn(func(string, string) (net.Listener, error) {
			if len(lns) == 0 {
				return nil, errors.New("devenv: kfake asked for more listeners than brokers")
			}
			l := lns[0]
			lns = lns[1:]
			return l, nil
		}),
		kfake.ClusterID("kar-dev"),
		// As a real broker's defaults: auto.create.topics.enable=true,
		// num.partitions=1.
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(1),
		kfake.WithLogger(slogKfake{k.opts.Logger}),
	}
	if c := k.opts.KafkaTLS; c != nil {
		opts = append(opts, kfake.TLS(c.ServerConfig()))
	}
	if k.opts.KafkaPassword != "" {
		opts = append(opts, kfake.EnableSASL(), kfake.Superuser("PLAIN", k.opts.KafkaUser, k.opts.KafkaPassword))
	}
	if k.opts.DataDir != "" {
		opts = append(opts, kfake.DataDir(filepath.Join(k.opts.DataDir, "kafka")), kfake.SyncWrites())
	}
	retain := map[string]string{}
	if k.opts.Retention > 0 {
		retain["log.retention.ms"] = strconv.FormatInt(k.opts.Retention.Milliseconds(), 10)
	}
	if k.opts.RetentionBytes > 0 {
		retain["log.retention.bytes"] = strconv.FormatInt(k.opts.RetentionBytes, 10)
	}
	if len(retain) > 0 {
		opts = append(opts, kfake.BrokerConfigs(retain))
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		closeAll()
		return fmt.Errorf("cannot start the Kafka-protocol broker: %w", err)
	}
	k.cluster = cluster
	k.bound = cluster.ListenAddrs()
	if len(retain) > 0 {
		period := time.Minute
		if k.opts.Retention > 0 {
			period = min(max(k.opts.Retention/10, 10*time.Millisecond), period)
		}
		k.sweeper = make(chan struct{})
		go sweep(cluster, period, k.sweeper)
	}
	k.opts.Logger.Info("Kafka-protocol broker serving", "addr", strings.Join(k.bound, ","))
	return nil
}

func (k *kafkaServer) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cluster != nil {
		if k.sweeper != nil {
			close(k.sweeper)
			k.sweeper = nil
		}
		k.cluster.Close()
		k.cluster = nil
	}
}

// sweep applies the retention every period until stop is closed: kfake,
// unlike a Kafka broker, deletes old records only when asked to.
func sweep(c *kfake.Cluster, period time.Duration, stop chan struct{}) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			c.ApplyRetention()
		}
	}
}

// slogKfake sends kfake's warnings and errors to slog; its info and debug
// lines log every request and would drown everything else.
type slogKfake struct{ log *slog.Logger }

func (l slogKfake) Logf(level kfake.LogLevel, format string, args ...any) {
	switch level {
	case kfake.LogLevelError:
		l.log.Error("kfake: " + fmt.Sprintf(format, args...))
	case kfake.LogLevelWarn:
		l.log.Warn("kfake: " + fmt.Sprintf(format, args...))
	}
}
