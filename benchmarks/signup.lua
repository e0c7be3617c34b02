-- wrk script: POST a sign-up form with a fresh address on every request.
--
--   wrk -s benchmarks/signup.lua URL -- PATH COOKIE TOKEN PREFIX [EXTRA]
--
-- PATH    the form's URL path, e.g. /signup/
-- COOKIE  the Cookie header to send (csrftoken=...), fetched once by the harness; "" for none
-- TOKEN   the masked CSRF token from the form (valid for that cookie on every request); "" for
--         none (our sign-up has no token: Fetch Metadata protects it, as a browser sends it)
-- PREFIX  the start of each address: PREFIX-<thread>-<n>@example.com is unique in the run
-- EXTRA   more url-encoded fields, starting with "&" (e.g. "&article=slug&website=")

local thread_count = 0

function setup(thread)
  thread:set("thread_id", thread_count)
  thread_count = thread_count + 1
end

local path, token, prefix, extra
local headers = {}
local counter = 0

function init(args)
  path, token, prefix, extra = args[1], args[3], args[4], args[5] or ""
  if args[2] ~= "" then
    headers["Cookie"] = args[2]
  end
  headers["Content-Type"] = "application/x-www-form-urlencoded"
  headers["Sec-Fetch-Site"] = "same-origin"  -- what a browser sends from the site's own page
  headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) backpain-bench"
end

function request()
  counter = counter + 1
  local email = prefix .. "-" .. thread_id .. "-" .. counter .. "%40example.com"
  local body = "name=Reader&consent=on&email=" .. email .. extra
  if token ~= "" then
    body = "csrfmiddlewaretoken=" .. token .. "&" .. body
  end
  return wrk.format("POST", path, headers, body)
end
