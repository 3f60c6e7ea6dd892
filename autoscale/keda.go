package autoscale

import (
	"strconv"
	"time"
)

// KEDASpec is the spec of a KEDA ScaledObject (keda.sh/v1alpha1) that
// scales t on kar-scaler at scaler with policy p, read every poll, without
// its scaleTargetRef (the caller's: a Deployment, or a Knative revision's
// that Knative's KEDA extension fills in). KEDA applies the windows itself:
// the cooldown as cooldownPeriod, the scale-down window as its HPA's
// stabilisation. The trigger is external-push: KEDA keeps StreamIsActive
// open and activates the target as soon as kar-scaler says so, not at its
// next poll.
func KEDASpec(t Target, p Policy, poll time.Duration, scaler string) map[string]any {
	md := map[string]any{
		"scalerAddress":    scaler,
		MetaApp:            t.App,
		MetaTargetInFlight: strconv.FormatInt(p.TargetInFlight, 10),
	}
	if t.Type == "service" {
		md[MetaService] = t.Name
	} else {
		md[MetaActorType] = t.Name
	}
	return map[string]any{
		"minReplicaCount": int64(p.Min),
		"maxReplicaCount": int64(p.Max),
		"pollingInterval": max(int64(poll.Seconds()), 1),
		"cooldownPeriod":  int64(p.Cooldown.Seconds()),
		"advanced": map[string]any{"horizontalPodAutoscalerConfig": map[string]any{"behavior": map[string]any{
			"scaleDown": map[string]any{"stabilizationWindowSeconds": int64(p.ScaleDownWindow.Seconds())},
		}}},
		"triggers": []any{map[string]any{"type": "external-push", "metadata": md}},
	}
}
