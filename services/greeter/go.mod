module github.com/micro/kubernetes/services/greeter

go 1.26.0
