

bookinfo/external-api104ç
:type.googleapis.com/istio.networking.v1alpha3.ServiceEntryO
api.example.orgªTLShttps (2'
203.0.113.10

https˚A	
zonea0