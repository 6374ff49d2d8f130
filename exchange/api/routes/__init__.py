"""The API's routes, one module per resource family. Routes stay thin: parse, call the runtime, present."""
