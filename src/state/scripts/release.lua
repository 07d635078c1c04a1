-- Lets go of a claim this replica took, when its action certainly did not run.
-- KEYS[1]: the claim. ARGV[1]: the running value it was taken with.
-- Returns 1 released, 0 not ours (or gone).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
