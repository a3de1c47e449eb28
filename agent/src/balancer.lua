-- disco's nginx balancer (nginx with lua-nginx-module: Debian's libnginx-mod-http-lua).
-- Written by disco-agent beside the file it renders; do not edit.
--
-- The routing of each app is one entry of the shared dict `disco_routes`, pushed by the
-- agent to the admin server (a unix socket of its own, never a port that serves
-- traffic). An entry is lines of:
--
--   routed <address> <weight>      a server of the app's routed set (weight 1-256)
--   dark <address> <weight>        a server of the dark canary's set
--   header <name> <value>          a request with this header value is dark
--   cookie <name> <value>          a request with this cookie value is dark
--
-- The access phase picks the set (dark or routed) and answers 503 when it is empty
-- (`ngx.exit` in the balancer phase would reach the client as 500); the balancer phase
-- picks a peer by weight, and another one on a retry.
--
-- The dict survives a reload but not a restart: a worker that finds it empty loads the
-- routes file the agent writes after every push (ROUTES below), once.

local balancer = require "ngx.balancer"

local ROUTES = "@ROUTES@"
local GENERATION = "\0generation"

local M = {}
local dict = ngx.shared.disco_routes
-- Per worker: app -> parsed entry, parsed again when the pushed text changes.
local parsed = {}

local function parse(text)
  local s = { routed = {}, dark = {}, headers = {}, cookies = {} }
  for line in text:gmatch("[^\n]+") do
    local kind, a, b = line:match("^(%a+) (%S+) (%S+)$")
    if kind == "routed" or kind == "dark" then
      -- An IPv6 host keeps its brackets: set_current_peer reads the first ':' of a
      -- bare one as the port's.
      local host, port = a:match("^(%[[^%]]+%]):(%d+)$")
      if not host then
        host, port = a:match("^([^:]+):(%d+)$")
      end
      local weight = tonumber(b)
      if host and weight and weight > 0 then
        local set = s[kind]
        set[#set + 1] = { host = host, port = tonumber(port), weight = weight }
      end
    elseif kind == "header" then
      s.headers[#s.headers + 1] = { a, b }
    elseif kind == "cookie" then
      s.cookies[#s.cookies + 1] = { a, b }
    end
  end
  for _, set in ipairs({ s.routed, s.dark }) do
    local total = 0
    for _, p in ipairs(set) do
      total = total + p.weight
    end
    set.total = total
  end
  return s
end

-- Replaces entries from a body of "app <name>" ... "end" blocks (an entry's lines in
-- between), "delete <name>" lines and a "generation <n>" line, read line by line.
-- With `only_add`, an entry (or the generation) already there is kept: the routes file
-- never overwrites a push. Returns the count of entries set and deleted, or nil and
-- an error.
local function store(body, only_add)
  local put = only_add and dict.add or dict.set
  local set, deleted, generation = 0, 0, nil
  local app, lines = nil, nil
  for line in (body .. "\n"):gmatch("([^\n]*)\n") do
    if app then
      if line == "end" then
        local ok, err, forcible = put(dict, app, table.concat(lines))
        if not ok and err ~= "exists" then
          return nil, err
        end
        if forcible then
          ngx.log(ngx.ERR, "disco: disco_routes is full; entries were evicted")
        end
        set = set + 1
        app = nil
      else
        lines[#lines + 1] = "\n" .. line
      end
    else
      local name = line:match("^app (%S+)$")
      if name then
        app, lines = name, {}
      else
        name = line:match("^delete (%S+)$")
        if name then
          dict:delete(name)
          deleted = deleted + 1
        else
          generation = line:match("^generation (%d+)$") or generation
        end
      end
    end
  end
  if generation then
    put(dict, GENERATION, generation)
  end
  return set, deleted
end

-- After a restart the dict is empty: the first worker to notice loads the routes file
-- (and the admin server before it stores a push, which may carry only some apps).
local function ensure_loaded(wait)
  if dict:get(GENERATION) then
    return
  end
  if not dict:add("\0loading", true, 5) and not wait then
    return
  end
  local f = io.open(ROUTES, "rb")
  if not f then
    ngx.log(ngx.WARN, "disco: no routes pushed and no routes file ", ROUTES)
    return
  end
  local body = f:read("*a")
  f:close()
  local ok, err = store(body, true)
  if not ok then
    ngx.log(ngx.ERR, "disco: loading ", ROUTES, ": ", err)
  end
end

local function entry(app)
  local text = dict:get(app)
  if not text then
    ensure_loaded()
    text = dict:get(app)
    if not text then
      return nil
    end
  end
  local e = parsed[app]
  if e and e.text == text then
    return e
  end
  e = parse(text)
  e.text = text
  parsed[app] = e
  return e
end

local function is_dark(e, network)
  if network == "1" then
    return true
  end
  if #e.headers > 0 then
    local headers = ngx.req.get_headers()
    for _, h in ipairs(e.headers) do
      -- The keys are lower case; a plain lookup would also take `_` for `-`.
      local v = rawget(headers, h[1]:lower())
      if type(v) == "table" then
        for _, one in ipairs(v) do
          if one == h[2] then
            return true
          end
        end
      elseif v == h[2] then
        return true
      end
    end
  end
  if #e.cookies > 0 then
    -- Names compared exactly (case and all), as HAProxy does.
    local header = ngx.var.http_cookie or ""
    for k, v in header:gmatch("([^=;%s]+)=([^;%s]*)") do
      for _, c in ipairs(e.cookies) do
        if k == c[1] and v == c[2] then
          return true
        end
      end
    end
  end
  return false
end

-- Access phase: `network` is "1" when a network match of the rendered file matched.
function M.access(app, network)
  local e = entry(app)
  if not e then
    ngx.log(ngx.WARN, "disco: no routing pushed for ", app, " yet")
    return ngx.exit(503)
  end
  local set = e.routed
  if e.dark.total > 0 and is_dark(e, network) then
    set = e.dark
  end
  if set.total == 0 then
    return ngx.exit(503)
  end
  ngx.ctx.disco = { set = set, tries = 0, tried = {} }
end

-- A peer by weight among those not tried yet (among all once every one was).
local function pick(set, tried)
  local total = 0
  for _, p in ipairs(set) do
    if not tried[p] then
      total = total + p.weight
    end
  end
  if total == 0 then
    tried = {}
    total = set.total
  end
  local r = math.random() * total
  local chosen
  for _, p in ipairs(set) do
    if not tried[p] then
      chosen = p
      r = r - p.weight
      if r <= 0 then
        break
      end
    end
  end
  return chosen
end

-- Balancer phase; `tries` is the number of servers one request may try.
function M.balance(tries)
  local ctx = ngx.ctx.disco
  if not ctx then
    return ngx.exit(503)
  end
  if ctx.tries == 0 and tries > 1 and #ctx.set > 1 then
    balancer.set_more_tries(math.min(tries, #ctx.set) - 1)
  end
  ctx.tries = ctx.tries + 1
  local p = pick(ctx.set, ctx.tried)
  ctx.tried[p] = true
  local ok, err = balancer.set_current_peer(p.host, p.port)
  if not ok then
    ngx.log(ngx.ERR, "disco: set_current_peer ", p.host, ":", p.port, ": ", err)
  end
end

-- The admin server. PUT stores a body (see `store`); GET lists the generation line and
-- every entry as a block, by name.
function M.admin()
  local method = ngx.req.get_method()
  if method == "PUT" then
    ngx.req.read_body()
    local body = ngx.req.get_body_data()
    if not body then
      local file = ngx.req.get_body_file()
      if file then
        local f = io.open(file, "rb")
        body = f:read("*a")
        f:close()
      end
    end
    ensure_loaded(true)
    local set, deleted = store(body or "")
    if not set then
      ngx.status = 507
      ngx.say("disco_routes: ", deleted)
      return ngx.exit(507)
    end
    ngx.say("ok ", set, " set ", deleted, " deleted")
  elseif method == "GET" then
    ngx.print("generation ", dict:get(GENERATION) or "none", "\n")
    local keys = dict:get_keys(0)
    table.sort(keys)
    for _, k in ipairs(keys) do
      if k:byte(1) ~= 0 then
        ngx.print("app ", k, dict:get(k), "\nend\n")
      end
    end
  else
    return ngx.exit(405)
  end
end

return M
