package injector

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Path is where the API server posts AdmissionReviews (the path of KAR's
// webhook configurations).
const Path = "/inject-sidecar"

// maxReviewBytes bounds a request body; the API server caps objects at
// about 1.5 MiB, so anything far larger is not an AdmissionReview.
const maxReviewBytes = 8 << 20

// Handler answers AdmissionReview v1 requests for Pods.
type Handler struct {
	Options Options
	Log     *slog.Logger
}

// ServeHTTP decodes an AdmissionReview and answers it. A body that is not
// an AdmissionReview gets a 4xx with a message; everything that is one gets
// an AdmissionReview response, allowed or denied.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "kar-injector: POST an AdmissionReview (admission.k8s.io/v1) to "+Path, http.StatusMethodNotAllowed)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		http.Error(w, fmt.Sprintf("kar-injector: Content-Type %q is not application/json", ct), http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReviewBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("kar-injector: body larger than %d bytes", maxReviewBytes), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "kar-injector: cannot read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		http.Error(w, "kar-injector: body is not an AdmissionReview: "+err.Error(), http.StatusBadRequest)
		return
	}
	if review.Request == nil {
		http.Error(w, "kar-injector: AdmissionReview has no request", http.StatusBadRequest)
		return
	}
	if review.APIVersion != "" && review.APIVersion != admissionv1.SchemeGroupVersion.String() {
		http.Error(w, fmt.Sprintf("kar-injector: AdmissionReview apiVersion %q is not supported: set admissionReviewVersions [v1] in the webhook configuration", review.APIVersion), http.StatusBadRequest)
		return
	}
	resp := h.Review(review.Request)
	out := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Response: resp,
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(out); err != nil {
		h.log().Warn("writing admission response", "err", err)
	}
}

func (h *Handler) log() *slog.Logger {
	if h.Log == nil {
		return slog.Default()
	}
	return h.Log
}

// Review decides on one admission request.
func (h *Handler) Review(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	// Never touch kar's own namespace nor the system ones, even if a
	// webhook configuration forgets to exclude them.
	if req.Namespace == "kar-system" || strings.HasPrefix(req.Namespace, "kube-") {
		return resp
	}
	if templatePath, ok := workloads[req.Kind.Group+"/"+req.Kind.Kind]; ok {
		return h.reviewTemplate(req, resp, templatePath)
	}
	if req.Kind.Kind != "Pod" || req.Kind.Group != "" || req.Operation != admissionv1.Create {
		return resp
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return deny(resp, fmt.Sprintf("kar-injector: cannot decode the Pod: %v", err))
	}
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	ann, err := ParseAnnotations(pod.Annotations)
	if err == nil && ann != nil {
		err = ann.CheckLabels(pod.Labels)
	}
	if err != nil {
		h.log().Info("denied pod", "namespace", req.Namespace, "pod", name, "reason", err.Error())
		return deny(resp, "kar-injector: "+err.Error())
	}
	if ann == nil {
		return resp
	}
	ops := Patch(&pod, ann, h.Options)
	if len(ops) == 0 {
		return resp
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return deny(resp, fmt.Sprintf("kar-injector: internal error encoding the patch: %v", err))
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch = patch
	resp.PatchType = &pt
	mode := "in-container"
	if ann.SidecarContainer {
		mode = "sidecar"
	}
	h.log().Info("injected pod", "namespace", req.Namespace, "pod", name, "app", ann.App, "mode", mode, "ops", len(ops))
	return resp
}

// workloads are the kinds whose Pod template is checked at create and
// update, so a bad annotation is reported by `kubectl apply` rather than
// later in a ReplicaSet's or Job's events. Each maps to the path of its
// template's metadata. The Pods themselves are mutated when created.
var workloads = map[string][]string{
	"apps/Deployment":  {"spec", "template", "metadata"},
	"apps/StatefulSet": {"spec", "template", "metadata"},
	"apps/DaemonSet":   {"spec", "template", "metadata"},
	"apps/ReplicaSet":  {"spec", "template", "metadata"},
	"batch/Job":        {"spec", "template", "metadata"},
	"batch/CronJob":    {"spec", "jobTemplate", "spec", "template", "metadata"},
}

func (h *Handler) reviewTemplate(req *admissionv1.AdmissionRequest, resp *admissionv1.AdmissionResponse, path []string) *admissionv1.AdmissionResponse {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return resp
	}
	var obj any
	if err := json.Unmarshal(req.Object.Raw, &obj); err != nil {
		return deny(resp, fmt.Sprintf("kar-injector: cannot decode the %s: %v", req.Kind.Kind, err))
	}
	for _, key := range path {
		m, ok := obj.(map[string]any)
		if !ok {
			return resp
		}
		obj = m[key]
	}
	meta, ok := obj.(map[string]any)
	if !ok {
		return resp
	}
	rawAnn, ok := meta["annotations"].(map[string]any)
	if !ok {
		return resp
	}
	a, err := ParseAnnotations(stringMap(rawAnn))
	if err == nil && a != nil {
		rawLabels, _ := meta["labels"].(map[string]any)
		err = a.CheckLabels(stringMap(rawLabels))
	}
	if err != nil {
		h.log().Info("denied pod template", "namespace", req.Namespace, "kind", req.Kind.Kind, "name", req.Name, "reason", err.Error())
		return deny(resp, fmt.Sprintf("kar-injector: Pod template of %s %s: %v", req.Kind.Kind, req.Name, err))
	}
	return resp
}

// stringMap keeps the string values of m; others become "" (a non-string
// annotation is then reported as empty).
func stringMap(m map[string]any) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		s, _ := v.(string)
		out[k] = s
	}
	return out
}

func deny(resp *admissionv1.AdmissionResponse, msg string) *admissionv1.AdmissionResponse {
	resp.Allowed = false
	resp.Result = &metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusBadRequest,
		Reason:  metav1.StatusReasonBadRequest,
		Message: msg,
	}
	return resp
}
