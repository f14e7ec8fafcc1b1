module github.com/micro/kubernetes/web

go 1.26.0
