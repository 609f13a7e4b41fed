-- wrk script for the OCSP benchmark (loadtest/ocsp/bench.sh).
--
--   wrk ... -s ocsp.lua http://127.0.0.1:PORT -- REQUESTS_FILE METHOD PATH [check]
--
-- REQUESTS_FILE: one request per line, "<url-encoded base64 DER> <hex DER> <good|revoked>".
-- METHOD GET:  GET PATH<url-encoded base64> (RFC 6960 Appendix A / RFC 5019), PATH
--              being "/ocsp/" for ca-service and "/" for openssl ocsp.
-- METHOD POST: POST PATH with the DER body, Content-Type application/ocsp-request.
-- Every thread cycles through all requests (pre-formatted in init, so the per-request
-- Lua cost is one table lookup).
--
-- "check": run with -t1 -c1. wrk then alternates request()/response() on its single
-- connection, so each response is matched against the status expected for the request
-- just sent: HTTP 200, a successful OCSPResponse, certStatus good/revoked as issued.
-- done() prints one "CHECK ..." line that bench.sh parses. Without "check" no
-- response() is defined, so wrk does not collect headers or bodies.

-- wrk's default resolver opens and closes a test connection before the run. `openssl
-- ocsp -port` treats that empty connection as a request and then spins at 100 % CPU
-- forever, so resolve without connecting (bench.sh checks that the port listens).
function wrk.resolve(host, service)
   wrk.addrs = wrk.lookup(host, service)
end

local reqs, expected = {}, {}
local n, i, pending = 0, 0, 0
-- check counters (read by done() through thread:get)
responses, ok, bad, first_bad, body_len = 0, 0, 0, "", 0

local function unhex(h)
   return (h:gsub("..", function(cc) return string.char(tonumber(cc, 16)) end))
end

-- Classifies a DER OCSPResponse: "good", "revoked", "unknown", "error-N" (responseStatus
-- N != successful) or "not-ocsp".
local function classify(body)
   if not body or #body < 5 or body:byte(1) ~= 0x30 then return "not-ocsp" end
   local l, off = body:byte(2), nil
   if l < 0x80 then off = 3 elseif l == 0x81 then off = 4
   elseif l == 0x82 then off = 5 elseif l == 0x83 then off = 6 else return "not-ocsp" end
   if body:byte(off) ~= 0x0a or body:byte(off + 1) ~= 1 then return "not-ocsp" end
   local status = body:byte(off + 2)
   if status ~= 0 then return "error-" .. status end
   -- SingleResponse.certStatus followed by thisUpdate (GeneralizedTime, 15 bytes):
   -- good = [0] NULL (80 00), unknown = [2] NULL (82 00), revoked = [1] { time, [reason] }.
   if body:find("\161[%z\1-\127]\24\15") then return "revoked" end
   if body:find("\128\0\24\15", 1, true) then return "good" end
   if body:find("\130\0\24\15", 1, true) then return "unknown" end
   return "unparsed"
end

function init(args)
   local file, method, path, mode = args[1], args[2], args[3], args[4]
   assert(file and method and path, "usage: -- REQUESTS_FILE GET|POST PATH [check]")
   for line in io.lines(file) do
      local enc, hex, want = line:match("^(%S+)%s+(%x+)%s+(%S+)")
      if enc then
         if method == "GET" then
            reqs[#reqs + 1] = wrk.format("GET", path .. enc)
         elseif method == "POST" then
            reqs[#reqs + 1] = wrk.format("POST", path,
               { ["Host"] = wrk.host, ["Content-Type"] = "application/ocsp-request" }, unhex(hex))
         else
            error("method must be GET or POST, not " .. method)
         end
         expected[#expected + 1] = want
      end
   end
   n = #reqs
   assert(n > 0, "no requests in " .. file)
   -- Threads start at different offsets so they do not ask for the same certificate
   -- in lock step.
   i = (tonumber(wrk.thread:get("id")) or 0) * math.floor(n / 2)
   if mode == "check" then
      checking = 1
      response = function(status, headers, body)
         responses = responses + 1
         local got = status == 200 and classify(body) or ("http-" .. status)
         if got == expected[pending] then
            ok = ok + 1
         else
            bad = bad + 1
            if first_bad == "" then
               first_bad = string.format("request #%d: expected %s, got %s", pending, expected[pending], got)
            end
         end
         if body_len == 0 and body then body_len = #body end
      end
   end
end

function request()
   i = i % n + 1
   pending = i
   return reqs[i]
end

local threads = {}

function setup(thread)
   thread:set("id", #threads)
   threads[#threads + 1] = thread
end

function done(summary, latency, requests)
   if threads[1] and threads[1]:get("checking") == 1 then
      local r, o, b, f, len = 0, 0, 0, "", 0
      for _, th in ipairs(threads) do
         r, o, b = r + th:get("responses"), o + th:get("ok"), b + th:get("bad")
         if f == "" then f = th:get("first_bad") end
         if len == 0 then len = th:get("body_len") end
      end
      io.write(string.format("CHECK responses=%d ok=%d bad=%d body_bytes=%d first_bad=%s\n", r, o, b, len, f))
   end
end
