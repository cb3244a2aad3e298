-- wrk script: signed GitHub webhook deliveries, each with its own X-GitHub-Delivery id.
--
--   wrk -t2 -c64 -d10s --latency -s Benchmarks/intake.lua \
--       http://127.0.0.1:8443/webhooks/github/int_… -- BODY_FILE SIGNATURE [ID_PREFIX] [EVENT] [TARGETS_FILE]
--
-- BODY_FILE  the payload, sent as is (e.g. a saved 23 KB pull_request delivery)
-- SIGNATURE  its X-Hub-Signature-256 value: "sha256=" .. hex(HMAC-SHA256(webhook secret, body)),
--            e.g. `printf 'sha256=%s' "$(openssl dgst -sha256 -hmac "$SECRET" -hex < BODY_FILE | cut -d' ' -f2)"`
--            (GitHub signs the body only, so one signature serves every delivery id)
-- ID_PREFIX  prefix of the delivery ids (default "wrk"; use a new one per run: ids are unique per workspace)
-- EVENT      X-GitHub-Event (default "pull_request")
-- TARGETS_FILE  optional: one "PATH SIGNATURE" line per integration (each its own webhook URL path
--            and the body's signature under its secret); requests then go round them in turn
--            (each thread starting elsewhere), spreading the load over many workspaces; the URL
--            above then gives only scheme, host and port
--
-- Every answer other than 202 is counted and reported at the end ("non-202: N"), with the 202s.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "rb"), "cannot read the body file " .. tostring(args[1]))
  wrk.body = file:read("*a")
  file:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-Hub-Signature-256"] = assert(args[2], "the signature is required")
  wrk.headers["X-GitHub-Event"] = args[4] or "pull_request"
  prefix = (args[3] or "wrk") .. "-" .. id .. "-"
  targets = {}
  if args[5] then
    for line in io.lines(args[5]) do
      local path, signature = line:match("^(%S+)%s+(%S+)$")
      if path then table.insert(targets, { path = path, signature = signature }) end
    end
    assert(#targets > 0, "no \"PATH SIGNATURE\" lines in " .. args[5])
  end
  accepted = 0
  refused = 0
end

function request()
  counter = counter + 1
  -- wrk.format uses wrk.headers when given none (a headers table would replace them all).
  wrk.headers["X-GitHub-Delivery"] = prefix .. counter
  if #targets > 0 then
    local target = targets[(counter * 7 + id * 997) % #targets + 1]
    wrk.headers["X-Hub-Signature-256"] = target.signature
    return wrk.format(nil, target.path)
  end
  return wrk.format()
end

function response(status, headers, body)
  if status == 202 then accepted = accepted + 1 else refused = refused + 1 end
end

function done(summary, latency, requests)
  local ok, bad = 0, 0
  for _, thread in ipairs(threads) do
    ok = ok + thread:get("accepted")
    bad = bad + thread:get("refused")
  end
  io.write(string.format("202: %d\nnon-202: %d\n", ok, bad))
  for _, p in ipairs({ 50, 90, 99, 99.9 }) do
    io.write(string.format("latency p%g: %.3f ms\n", p, latency:percentile(p) / 1000))
  end
end
