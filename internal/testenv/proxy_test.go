package testenv_test

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/kar-runtime/kar/internal/testenv"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s := bufio.NewScanner(c)
				for s.Scan() {
					if _, err := c.Write([]byte(s.Text() + "\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func echo(c net.Conn, line string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

// TestProxyCutRestore: a cut closes open connections and refuses new ones
// (the client sees an error, not a hang); after Restore new ones work.
func TestProxyCutRestore(t *testing.T) {
	p := testenv.StartProxy(t, echoServer(t))
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := echo(c, "a"); err != nil || got != "a\n" {
		t.Fatalf("before the cut: %q %v", got, err)
	}
	p.Cut()
	if got, err := echo(c, "b"); err == nil {
		t.Fatalf("an open connection still answers after the cut: %q", got)
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err == nil {
		if got, err := echo(c2, "c"); err == nil {
			t.Fatalf("a new connection answers during the cut: %q", got)
		}
		c2.Close()
	}
	p.Restore()
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got, err := echo(c3, "d"); err != nil || got != "d\n" {
		t.Fatalf("after Restore: %q %v", got, err)
	}
}

// TestProxyStall: while stalled nothing passes but nothing is closed;
// after Restore what was sent arrives, on the same connection.
func TestProxyStall(t *testing.T) {
	p := testenv.StartProxy(t, echoServer(t))
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := c.Write([]byte("a\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := r.ReadString('\n'); err != nil || got != "a\n" {
		t.Fatalf("before the stall: %q %v", got, err)
	}
	p.Stall()
	if _, err := c.Write([]byte("b\n")); err != nil {
		t.Fatalf("a write during the stall failed: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if got, err := r.ReadString('\n'); err == nil {
		t.Fatalf("an answer came through the stall: %q", got)
	}
	p.Restore()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := r.ReadString('\n'); err != nil || got != "b\n" {
		t.Fatalf("after Restore: %q %v", got, err)
	}
}

// TestKafkaProxy: a sarama client bootstrapped on the proxy learns the
// proxy as the broker, so producing goes through it, and a cut stops it
// while a client of the broker itself goes on.
func TestKafkaProxy(t *testing.T) {
	b := testenv.Backend(t, testenv.EmbeddedRedis())
	p := testenv.StartKafkaProxy(t, b.KafkaBrokers())
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.Producer.Return.Successes = true
	cfg.Producer.Retry.Max = 0
	cfg.Metadata.Retry.Max = 0
	cfg.Net.DialTimeout = time.Second
	client, err := sarama.NewClient([]string{p.Addr()}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	brokers := client.Brokers()
	if len(brokers) != 1 || brokers[0].Addr() != p.Addr() {
		t.Fatalf("brokers learnt through the proxy: %v, want only %s", addrs(brokers), p.Addr())
	}
	prod, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "proxied", Value: sarama.StringEncoder("x")}); err != nil {
		t.Fatalf("produce through the proxy: %v", err)
	}
	p.Cut()
	if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "proxied", Value: sarama.StringEncoder("y")}); err == nil {
		t.Fatal("produce succeeded during the cut")
	}
	direct, err := sarama.NewClient([]string{b.KafkaBrokers()}, cfg)
	if err != nil {
		t.Fatalf("a client of the broker itself during the cut: %v", err)
	}
	direct.Close()
	p.Restore()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		_, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "proxied", Value: sarama.StringEncoder("z")})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("produce after Restore: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func addrs(bs []*sarama.Broker) string {
	var s []string
	for _, b := range bs {
		s = append(s, b.Addr())
	}
	return strings.Join(s, ",")
}
