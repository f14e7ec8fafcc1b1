package kube

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// provisionVolumes gives every claim that waits for a volume one, as a
// cluster's default StorageClass does, until ctx ends: a PersistentVolume
// bound to the claim ahead (claimRef), of the size and access modes asked,
// kept (Retain) when the claim goes. Its data is a folder of the cluster's
// that every node sees, as a cloud disk attaches to whichever node runs its
// pod: a pod that moves (a drain, a lost node) finds its data where it goes.
//
// It watches the claims, as a provisioner does. It polled them five times a
// second before, which spent the whole of the client's 5 requests a second:
// the tests' own requests through that client waited up to 14 s for their
// turn (client-go's "client-side throttling", seen in a CI run). Each watch
// ends after provisionResync and every claim is listed again, as an
// informer resyncs: a watch tells of changes only, so a claim whose volume
// could not be made (the API server busy) is tried again then, and a watch
// whose connection died silently is replaced.
func (c *Cluster) provisionVolumes(ctx context.Context) {
	claims := c.Client.CoreV1().PersistentVolumeClaims(metav1.NamespaceAll)
	for ctx.Err() == nil {
		list, err := claims.List(ctx, metav1.ListOptions{})
		if err != nil {
			if ctx.Err() == nil {
				log.Printf("listing the volume claims: %v", err)
				time.Sleep(time.Second)
			}
			continue
		}
		for _, claim := range list.Items {
			c.provisionPending(ctx, claim)
		}
		c.watchClaims(ctx, list.ResourceVersion)
	}
}

// provisionResync is how long a watch of the claims lasts before they are
// all listed again.
const provisionResync = 10 * time.Second

// watchClaims provisions the claims that change from version on, for
// provisionResync at most.
func (c *Cluster) watchClaims(ctx context.Context, version string) {
	watching, cancel := context.WithTimeout(ctx, provisionResync)
	defer cancel()
	w, err := c.Client.CoreV1().PersistentVolumeClaims(metav1.NamespaceAll).Watch(watching, metav1.ListOptions{ResourceVersion: version})
	if err != nil {
		if ctx.Err() == nil {
			log.Printf("watching the volume claims: %v", err)
		}
		<-watching.Done()
		return
	}
	defer w.Stop()
	for {
		select {
		case <-watching.Done():
			return
		case ev, ok := <-w.ResultChan():
			if !ok {
				return
			}
			if claim, ok := ev.Object.(*corev1.PersistentVolumeClaim); ok {
				c.provisionPending(ctx, *claim)
			}
		}
	}
}

// provisionPending gives claim a volume if it waits for one.
func (c *Cluster) provisionPending(ctx context.Context, claim corev1.PersistentVolumeClaim) {
	if claim.Spec.VolumeName != "" || claim.Status.Phase != corev1.ClaimPending || claim.DeletionTimestamp != nil {
		return
	}
	if err := c.provision(ctx, claim); err != nil && !apierrors.IsAlreadyExists(err) {
		log.Printf("provisioning a volume for %s/%s: %v", claim.Namespace, claim.Name, err)
	}
}

func (c *Cluster) provision(ctx context.Context, claim corev1.PersistentVolumeClaim) error {
	name := "pv-" + string(claim.UID)
	dir := c.path("volumes", name)
	// Any user the pod runs as may write it: fsGroup does not apply to a
	// host folder.
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	size, ok := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		return fmt.Errorf("the claim asks no storage size")
	}
	class := ""
	if claim.Spec.StorageClassName != nil {
		class = *claim.Spec.StorageClassName
	}
	hostPath := corev1.HostPathDirectory
	_, err := c.Client.CoreV1().PersistentVolumes().Create(ctx, &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   claim.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              class,
			ClaimRef: &corev1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: claim.Namespace, Name: claim.Name, UID: claim.UID,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &hostPath},
			},
		},
	}, metav1.CreateOptions{})
	return err
}
