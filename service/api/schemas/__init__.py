"""Wire structs of the API, one module per resource; ``common`` holds what they share.

A schema module declares what a route takes and answers (msgspec structs, which the OpenAPI
document is generated from) and turns a stage's models into those structs. Money and
instants are text in their ``service.wire`` forms.
"""
