package cetest

// CRNs of the instances the fixture keys belong to.
const (
	RedisCRN        = "crn:v1:bluemix:public:databases-for-redis:us-south:a/acct:11111111-2222-3333-4444-555555555555::"
	EventStreamsCRN = "crn:v1:bluemix:public:messagehub:us-south:a/acct:66666666-7777-8888-9999-000000000000::"
)

// Fixture values, so tests can check them (and check they are never printed).
const (
	RedisHost     = "abc-123.bn2a2uid0up8mv7mv2ig.databases.appdomain.cloud"
	RedisPort     = 31234
	RedisUser     = "ibm_cloud_0a1b2c3d"
	RedisPassword = "redis-Secret-pw-1"
	RedisCA       = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUR0ZXN0Ci0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K"
	KafkaPassword = "kafka-Secret-pw-2"
)

// KafkaBrokers are the fixture's brokers, as kafka_brokers_sasl lists them.
var KafkaBrokers = []string{
	"broker-0-abc.kafka.svc01.us-south.eventstreams.cloud.ibm.com:9093",
	"broker-1-abc.kafka.svc01.us-south.eventstreams.cloud.ibm.com:9093",
}

// RedisCredentials is a Databases for Redis service key's credentials.
func RedisCredentials() map[string]any {
	return map[string]any{
		"connection": map[string]any{
			"rediss": map[string]any{
				"type": "uri", "scheme": "rediss", "path": "/0", "database": 0,
				"composed": []any{"rediss://" + RedisUser + ":" + RedisPassword + "@" + RedisHost + ":31234/0"},
				"hosts":    []any{map[string]any{"hostname": RedisHost, "port": RedisPort}},
				"authentication": map[string]any{
					"method": "direct", "username": RedisUser, "password": RedisPassword,
				},
				"certificate": map[string]any{
					"name": "0b1c2d3e", "certificate_base64": RedisCA, "certificate_authority": "self_signed",
				},
				"query_options": map[string]any{},
			},
			"cli": map[string]any{"bin": "redli", "type": "cli"},
		},
		"instance_administration_api": map[string]any{
			"deployment_id": RedisCRN, "instance_id": RedisCRN,
			"root": "https://api.us-south.databases.cloud.ibm.com/v5/ibm",
		},
		"apikey": "redis-key-apikey-not-used", "iam_apikey_name": "kar-creds",
	}
}

// EventStreamsCredentials is an Event Streams service key's credentials.
func EventStreamsCredentials() map[string]any {
	brokers := make([]any, len(KafkaBrokers))
	for i, b := range KafkaBrokers {
		brokers[i] = b
	}
	return map[string]any{
		"kafka_brokers_sasl":  brokers,
		"bootstrap_endpoints": KafkaBrokers[0] + "," + KafkaBrokers[1],
		"user":                "token",
		"password":            KafkaPassword,
		"api_key":             KafkaPassword,
		"apikey":              KafkaPassword,
		"kafka_admin_url":     "https://abc.svc01.us-south.eventstreams.cloud.ibm.com",
		"instance_id":         "66666666-7777-8888-9999-000000000000",
	}
}

// AddKarCredential stores the Redis and Event Streams keys of one
// credential name, as kar-ce-project-enable.sh expects them.
func (d *Double) AddKarCredential(name string) {
	d.AddResourceKey(name, RedisCRN, RedisCredentials())
	d.AddResourceKey(name, EventStreamsCRN, EventStreamsCredentials())
}
