// Command client-go-elector contends for a Lease with client-go's leaderelection package and
// prints one JSON line per event, in the same format as fleet-election-contender. fleet-rs's
// tests run it beside the Rust elector to prove both respect each other on one Lease.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

type traceEvent struct {
	TsMs     float64 `json:"ts_ms"`
	Identity string  `json:"identity"`
	Event    string  `json:"event"`
	Term     *uint64 `json:"term,omitempty"`
	Detail   string  `json:"detail,omitempty"`
}

var (
	out      sync.Mutex
	identity string
)

func nowMs() float64 { return float64(time.Now().UnixNano()) / 1e6 }

func emit(ts float64, event string, term *uint64, detail string) {
	line, err := json.Marshal(traceEvent{TsMs: ts, Identity: identity, Event: event, Term: term, Detail: detail})
	if err != nil {
		return
	}
	out.Lock()
	defer out.Unlock()
	os.Stdout.Write(append(line, '\n'))
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file")
	lease := flag.String("lease", "fleet-election-contender", "Lease name")
	namespace := flag.String("namespace", "default", "Lease namespace")
	flag.StringVar(&identity, "identity", "client-go", "holder identity")
	leaseDuration := flag.Duration("lease-duration", 15*time.Second, "lease duration")
	renewDeadline := flag.Duration("renew-deadline", 10*time.Second, "renew deadline")
	retryPeriod := flag.Duration("retry-period", 2*time.Second, "retry period")
	actInterval := flag.Duration("act-interval", 20*time.Millisecond, "how often the work acts while leading")
	flag.Parse()

	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		emit(nowMs(), "exited", nil, err.Error())
		os.Exit(1)
	}
	client := kubernetes.NewForConfigOrDie(config)
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: *lease, Namespace: *namespace},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	var term uint64
	emit(nowMs(), "ready", nil, "")
	leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   *leaseDuration,
		RenewDeadline:   *renewDeadline,
		RetryPeriod:     *retryPeriod,
		ReleaseOnCancel: true,
		Name:            *lease,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leading context.Context) {
				term++
				current := term
				emit(nowMs(), "acquired", &current, "")
				ticker := time.NewTicker(*actInterval)
				defer ticker.Stop()
				for {
					ts := nowMs()
					select {
					case <-leading.Done():
						return
					default:
					}
					emit(ts, "act", &current, "")
					select {
					case <-leading.Done():
						return
					case <-ticker.C:
					}
				}
			},
			OnStoppedLeading: func() {
				current := term
				if ctx.Err() != nil {
					emit(nowMs(), "released", &current, "")
				} else {
					emit(nowMs(), "lost", &current, "client-go stopped leading")
				}
			},
			OnNewLeader: func(holder string) {
				if holder != identity {
					emit(nowMs(), "new_leader", nil, holder)
				}
			},
		},
	})
	emit(nowMs(), "exited", nil, "")
}
