# CloudFront as current guides and modules write it, against `keyfront
# emulate`: a bucket and its objects, a distribution with a signed default
# behavior and a public one, its key group, public key, origin access
# control, policies (managed ones looked up by name; a cache policy keying a
# query parameter and an origin request policy of its own), a custom origin
# (an application on loopback) and two CloudFront Functions. Applied,
# planned, updated and destroyed by tests/clients.rs, which checks their
# effects over the wire. The provider finds the emulator through
# AWS_ENDPOINT_URL_CLOUDFRONT and AWS_ENDPOINT_URL_S3.

terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.100.0"
    }
  }
}

variable "bucket" {
  type    = string
  default = "keyfront-example-site"
}

variable "public_key_pem" {
  type = string
}

# An HTTP application on loopback, served under /api/* as a custom origin.
variable "app_port" {
  type = number
}

variable "comment" {
  type    = string
  default = "keyfront example"
}

provider "aws" {
  region                      = "eu-west-1"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true
}

# Not `force_destroy`: the embedded store has no ListObjectVersions, which
# emptying a bucket first asks for.
resource "aws_s3_bucket" "site" {
  bucket = var.bucket
}

resource "aws_s3_object" "pages" {
  for_each = {
    "site/index.html"             = "<h1>signed home</h1>"
    "site/public/hello.txt"       = "hello"
    "site/public/docs/index.html" = "<h1>docs</h1>"
  }
  bucket       = aws_s3_bucket.site.bucket
  key          = each.key
  content      = each.value
  content_type = endswith(each.key, ".html") ? "text/html" : "text/plain"
}

data "aws_cloudfront_cache_policy" "optimized" {
  name = "Managed-CachingOptimized"
}

data "aws_cloudfront_origin_request_policy" "cors" {
  name = "Managed-CORS-S3Origin"
}

data "aws_cloudfront_response_headers_policy" "security" {
  name = "Managed-SecurityHeadersPolicy"
}

resource "aws_cloudfront_cache_policy" "public" {
  name        = "keyfront-example-public"
  comment     = "public files, kept a minute, one object per ?v="
  min_ttl     = 0
  default_ttl = 60
  max_ttl     = 300

  parameters_in_cache_key_and_forwarded_to_origin {
    cookies_config {
      cookie_behavior = "none"
    }
    headers_config {
      header_behavior = "none"
    }
    query_strings_config {
      query_string_behavior = "whitelist"
      query_strings {
        items = ["v"]
      }
    }
  }
}

# What the application behind /api/* is sent beyond the cache key.
resource "aws_cloudfront_origin_request_policy" "tenant" {
  name    = "keyfront-example-tenant"
  comment = "the tenant header and the session cookie reach the application"

  headers_config {
    header_behavior = "whitelist"
    headers {
      items = ["X-Tenant"]
    }
  }
  cookies_config {
    cookie_behavior = "whitelist"
    cookies {
      items = ["session"]
    }
  }
  query_strings_config {
    query_string_behavior = "all"
  }
}

resource "aws_cloudfront_public_key" "signer" {
  name        = "keyfront-example"
  comment     = "signs viewer URLs"
  encoded_key = var.public_key_pem
}

resource "aws_cloudfront_key_group" "signers" {
  name    = "keyfront-example"
  comment = "who may sign"
  items   = [aws_cloudfront_public_key.signer.id]
}

resource "aws_cloudfront_origin_access_control" "bucket" {
  name                              = "keyfront-example"
  description                       = "the edge signs its requests to the bucket"
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

# The legacy way to let a distribution read a bucket, still in many
# configurations: served like the origin access control above.
resource "aws_cloudfront_origin_access_identity" "legacy" {
  comment = "keyfront example (legacy identity)"
}

# Directory URLs (/docs/) served from their index page, and a header on
# every answer: CloudFront Functions, published and run by the edge.
resource "aws_cloudfront_function" "index" {
  name    = "index-rewrite"
  runtime = "cloudfront-js-2.0"
  comment = "keyfront example"
  publish = true
  code    = <<-EOT
    function handler(event) {
      var request = event.request;
      if (request.uri.endsWith('/')) { request.uri += 'index.html'; }
      return request;
    }
  EOT
}

resource "aws_cloudfront_function" "stamp" {
  name    = "stamp"
  runtime = "cloudfront-js-2.0"
  publish = true
  code    = <<-EOT
    function handler(event) {
      var response = event.response;
      response.headers['x-served-by'] = { value: 'keyfront' };
      return response;
    }
  EOT
}

resource "aws_cloudfront_distribution" "media" {
  enabled             = true
  comment             = var.comment
  default_root_object = "index.html"
  wait_for_deployment = false

  origin {
    origin_id                = "bucket"
    domain_name              = aws_s3_bucket.site.bucket_regional_domain_name
    origin_path              = "/site"
    origin_access_control_id = aws_cloudfront_origin_access_control.bucket.id
  }

  origin {
    origin_id   = "app"
    domain_name = "127.0.0.1"
    origin_path = "/site"

    custom_origin_config {
      http_port              = var.app_port
      https_port             = 443
      origin_protocol_policy = "http-only"
      origin_ssl_protocols   = ["TLSv1.2"]
    }

    custom_header {
      name  = "X-Origin-Verify"
      value = "from-terraform"
    }
  }

  default_cache_behavior {
    target_origin_id       = "bucket"
    viewer_protocol_policy = "allow-all"
    allowed_methods        = ["GET", "HEAD"]
    cached_methods         = ["GET", "HEAD"]
    cache_policy_id        = data.aws_cloudfront_cache_policy.optimized.id
    trusted_key_groups     = [aws_cloudfront_key_group.signers.id]
  }

  ordered_cache_behavior {
    path_pattern           = "/public/*"
    target_origin_id       = "bucket"
    viewer_protocol_policy = "allow-all"
    allowed_methods        = ["GET", "HEAD", "OPTIONS"]
    cached_methods         = ["GET", "HEAD"]

    function_association {
      event_type   = "viewer-request"
      function_arn = aws_cloudfront_function.index.arn
    }

    function_association {
      event_type   = "viewer-response"
      function_arn = aws_cloudfront_function.stamp.arn
    }

    cache_policy_id            = aws_cloudfront_cache_policy.public.id
    origin_request_policy_id   = data.aws_cloudfront_origin_request_policy.cors.id
    response_headers_policy_id = data.aws_cloudfront_response_headers_policy.security.id
  }

  ordered_cache_behavior {
    path_pattern             = "/api/*"
    target_origin_id         = "app"
    viewer_protocol_policy   = "allow-all"
    allowed_methods          = ["GET", "HEAD"]
    cached_methods           = ["GET", "HEAD"]
    cache_policy_id          = data.aws_cloudfront_cache_policy.optimized.id
    origin_request_policy_id = aws_cloudfront_origin_request_policy.tenant.id
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = true
  }

  tags = {
    team = "video"
  }
}

resource "aws_cloudfront_monitoring_subscription" "media" {
  distribution_id = aws_cloudfront_distribution.media.id

  monitoring_subscription {
    realtime_metrics_subscription_config {
      realtime_metrics_subscription_status = "Enabled"
    }
  }
}

output "domain_name" {
  value = aws_cloudfront_distribution.media.domain_name
}

output "distribution_id" {
  value = aws_cloudfront_distribution.media.id
}

output "legacy_identity_path" {
  value = aws_cloudfront_origin_access_identity.legacy.cloudfront_access_identity_path
}

output "public_key_id" {
  value = aws_cloudfront_public_key.signer.id
}
