module github.com/micro/kubernetes/e2e

go 1.26.0
