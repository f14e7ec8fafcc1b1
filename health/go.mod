module github.com/micro/kubernetes/health

go 1.26.0
