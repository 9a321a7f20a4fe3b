// Package viewer is the plate viewer: the web pages where biologists look at their plates
// (composite images, predicted compartments, confidence, failures) and at the model sets that
// label them. It is read-only over the object store, except for its thumbnail cache.
//
// `hpa up` and `hpa inference` mount Handler on their HTTP listener (beside /metrics, /healthz,
// /readyz); `hpa web` serves it on its own against any S3 + NATS. The package talks to the outside
// through three small seams: an ObjectStore (list, get, and put below the thumbnail prefix), an
// EventSource of label events (NATSEvents: the label-written events and dead letters of the
// inference consumer) and a ModelLocator (where the serving model set lives).
//
// # Pages
//
//	GET /                                     plates: samples, labeled, failed, incomplete, in progress,
//	                                          model versions, last update; most recent first; live
//	GET /plates/{plate}                       the sample grid: composite thumbnails (loading="lazy"),
//	                                          predicted compartments and confidence per sample, failed
//	                                          samples with their error kind; filters ?class=K&status=S
//	                                          &min=P&max=P&page=N; live
//	GET /plates/{plate}/submission.csv        the plate CSV the consumer wrote
//	GET /plates/{plate}/cards/{id}            one grid card + counts as JSON (live updates)
//	GET /plates/{plate}/samples/{id}          the four channels and the composite side by side with a
//	                                          shared zoom, the 28 probabilities as a bar chart with each
//	                                          class's threshold, the predicted set, provenance (sources,
//	                                          model name, version, digest, TTA views, members) or the
//	                                          error record
//	GET /plates/{plate}/samples/{id}/record.json   the label or error JSON as stored
//	GET /img/{plate}/{id}/{thumb|view}/{kind}?v=V  composite or red/green/blue/yellow image
//	GET /models                               the serving model set (manifest summary, report, curves),
//	                                          the model sets under models/, training runs and promotion
//	                                          decisions (internal/runs records); empty states otherwise
//	GET /events[?plate=P]                     server-sent events (event "sample", "resync")
//	GET /static/...                           embedded JavaScript, CSS, icons
//
// # Composite
//
// Composites follow the HPA convention: green = protein of interest, blue = nucleus, red =
// microtubules, and the endoplasmic reticulum (yellow) blended into red and green at half
// intensity, per pixel on the 8-bit planes:
//
//	R = min(255, red + yellow/2),  G = min(255, green + yellow/2),  B = blue   (yellow/2 = yellow >> 1)
//
// A single channel is shown in its stain's color (yellow as R = G = value). Channels are decoded
// by internal/pipeline (PNG, TIFF, JPEG, 16-bit, color planes), fitted to the size class (no
// upscaling) and cached as PNG under <thumbs prefix><plate>/<id>/<version>/<kind>-<px>.png, where
// version hashes the channel objects' keys and ETags: a re-upload makes new images, and a large
// TIFF is decoded once per version, never per request. Image URLs carry the version and are
// cached by the browser for a year.
//
// # Security and limits
//
// Every page, fragment, image, asset and event stream needs HTTP basic auth with the
// deployment's S3 access key and secret key, or the configured token (as the password, or as a
// bearer token); without it the answer is 401. Responses carry a Content-Security-Policy without
// inline script (the JavaScript is a file), frame-ancestors 'none', X-Content-Type-Options
// nosniff, Referrer-Policy no-referrer. Plate and sample names from URLs are validated (no
// traversal, no control characters) and every key built from them is checked to be a clean key
// below its configured prefix. Work per request is bounded: a request timeout, a page size,
// concurrent label reads, concurrent renders, the size of objects decoded, the number of event
// streams; listings and parsed labels are cached (IndexTTL, dropped early by label events), and
// the parsed labels of a plate are kept in <thumbs prefix><plate>/_labels.json so a restarted
// viewer reads one object instead of every label.
package viewer
