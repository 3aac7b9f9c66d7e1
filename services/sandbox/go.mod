module github.com/brokerflow/brokerflow/services/sandbox

go 1.26.0
